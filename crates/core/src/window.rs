//! Windows: rectangles of a grid that pixel-local work runs on one at a time.
//!
//! A grid is cut into windows of at most `size x size` pixels, row by row from the top left; the
//! last row and column of windows are narrower where `size` does not divide the grid. Each window
//! knows its offset, so its results fit back where they belong ([`Grid::window`] gives its own
//! grid) and a pixel keeps one index on the whole grid whatever the window size.

use crate::Grid;

/// The default window side in pixels: a multiple of the 512- and 1024-pixel blocks COGs use,
/// small enough that a window of twelve bands and a few time steps stays in the tens of MB.
pub const DEFAULT_WINDOW: usize = 1024;

/// A rectangle of pixels on a grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// First column.
    pub col: usize,
    /// First row.
    pub row: usize,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

impl Window {
    /// The whole of a `width x height` grid as one window.
    pub fn whole(width: usize, height: usize) -> Window {
        Window {
            col: 0,
            row: 0,
            width,
            height,
        }
    }

    /// Pixels in the window.
    pub fn len(&self) -> usize {
        self.width * self.height
    }

    /// True when the window has no pixel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The window's own grid, a part of `grid`.
    pub fn grid_of(&self, grid: &Grid) -> Grid {
        grid.window(self.col, self.row, self.width, self.height)
    }

    /// The row-major index on a grid `grid_width` wide of the window's pixel `(y, x)`.
    pub fn pixel_index(&self, y: usize, x: usize, grid_width: usize) -> u64 {
        ((self.row + y) * grid_width + self.col + x) as u64
    }
}

/// The windows of at most `size x size` pixels that cover a `width x height` grid, row by row
/// from the top left. A `size` of 0 is taken as 1.
pub fn windows(width: usize, height: usize, size: usize) -> Vec<Window> {
    let size = size.max(1);
    let mut out = Vec::new();
    for row in (0..height).step_by(size) {
        for col in (0..width).step_by(size) {
            out.push(Window {
                col,
                row,
                width: size.min(width - col),
                height: size.min(height - row),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_grid_once_with_narrower_edges() {
        let w = windows(10, 7, 4);
        assert_eq!(w.len(), 3 * 2);
        assert_eq!(
            w[2],
            Window {
                col: 8,
                row: 0,
                width: 2,
                height: 4
            }
        );
        assert_eq!(w[5].height, 3);
        let mut seen = [0u8; 70];
        for win in &w {
            for y in 0..win.height {
                for x in 0..win.width {
                    seen[win.pixel_index(y, x, 10) as usize] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
        assert_eq!(windows(10, 7, 100), vec![Window::whole(10, 7)]);
        assert!(windows(0, 7, 4).is_empty());
    }

    #[test]
    fn a_window_grid_is_offset_by_whole_pixels() {
        let g = Grid::north_up("EPSG:32618", 600_000.0, 5_000_000.0, 10.0, 20, 20);
        let w = Window {
            col: 4,
            row: 8,
            width: 3,
            height: 2,
        };
        let sub = w.grid_of(&g);
        assert_eq!(sub.transform[0], 600_040.0);
        assert_eq!(sub.transform[3], 4_999_920.0);
        assert_eq!((sub.width, sub.height), (3, 2));
    }
}
