//! The georeferenced pixel grid that rasters, matrices and labels live on.

use serde::{Deserialize, Serialize};

/// A north-up (or rotated) pixel grid: a CRS, a GDAL-order affine transform and a size.
///
/// The transform maps pixel (col, row) to `x = t[0] + col * t[1] + row * t[2]`,
/// `y = t[3] + col * t[4] + row * t[5]`, exactly as GDAL's `GetGeoTransform`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// The CRS as `EPSG:<code>` when it has one, else WKT.
    pub crs: String,
    /// GDAL geotransform.
    pub transform: [f64; 6],
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

impl Grid {
    /// A north-up grid with square pixels of `resolution` whose upper-left corner is `(x0, y0)`.
    pub fn north_up(
        crs: impl Into<String>,
        x0: f64,
        y0: f64,
        resolution: f64,
        width: usize,
        height: usize,
    ) -> Self {
        Grid {
            crs: crs.into(),
            transform: [x0, resolution, 0.0, y0, 0.0, -resolution],
            width,
            height,
        }
    }

    /// The EPSG code, when the CRS is written as `EPSG:<code>`.
    pub fn epsg(&self) -> Option<u32> {
        self.crs.strip_prefix("EPSG:").and_then(|c| c.parse().ok())
    }

    /// Number of pixels.
    pub fn len(&self) -> usize {
        self.width * self.height
    }

    /// True when the grid has no pixel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bounds `(min_x, min_y, max_x, max_y)` of a north-up grid.
    pub fn bounds(&self) -> (f64, f64, f64, f64) {
        let t = &self.transform;
        let x1 = t[0] + self.width as f64 * t[1];
        let y1 = t[3] + self.height as f64 * t[5];
        (t[0].min(x1), t[3].min(y1), t[0].max(x1), t[3].max(y1))
    }

    /// Area of one pixel in square CRS units (square metres for projected CRSs).
    pub fn pixel_area(&self) -> f64 {
        let t = &self.transform;
        (t[1] * t[5] - t[2] * t[4]).abs()
    }

    /// The grid of every `step`-th pixel of every `step`-th row: the same origin, pixels `step`
    /// times larger, `ceil(width / step) x ceil(height / step)` of them.
    pub fn coarsened(&self, step: usize) -> Grid {
        let t = &self.transform;
        let k = step.max(1) as f64;
        Grid {
            crs: self.crs.clone(),
            transform: [t[0], t[1] * k, t[2] * k, t[3], t[4] * k, t[5] * k],
            width: self.width.div_ceil(step.max(1)),
            height: self.height.div_ceil(step.max(1)),
        }
    }

    /// The sub-grid of a window that starts at `(col_off, row_off)` and spans `width x height`
    /// pixels. Pixel-local nodes can run per window and their results fit back by this grid.
    pub fn window(&self, col_off: usize, row_off: usize, width: usize, height: usize) -> Grid {
        let t = &self.transform;
        let (c, r) = (col_off as f64, row_off as f64);
        Grid {
            crs: self.crs.clone(),
            transform: [
                t[0] + c * t[1] + r * t[2],
                t[1],
                t[2],
                t[3] + c * t[4] + r * t[5],
                t[4],
                t[5],
            ],
            width,
            height,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_shifts_origin_and_keeps_resolution() {
        let g = Grid::north_up("EPSG:32618", 585080.0, 5032950.0, 10.0, 228, 207);
        let w = g.window(10, 20, 5, 6);
        assert_eq!(w.transform, [585180.0, 10.0, 0.0, 5032750.0, 0.0, -10.0]);
        assert_eq!((w.width, w.height), (5, 6));
        assert_eq!(g.bounds(), (585080.0, 5030880.0, 587360.0, 5032950.0));
        assert_eq!(g.epsg(), Some(32618));
        assert_eq!(g.pixel_area(), 100.0);
    }
}
