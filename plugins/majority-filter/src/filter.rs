//! The majority (mode) filter itself: plain Rust over ndarray views, no flow types.

use flow_plugin::ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};

/// Replaces each classified pixel by the most frequent class in the `size x size` window centred
/// on it (clipped at the edges).
///
/// - Pixels equal to `nodata` stay `nodata` and do not vote.
/// - When the centre's class is among the most frequent, it is kept (ties keep the centre).
/// - Otherwise, among equally frequent classes, the smallest id wins (deterministic).
///
/// `size` must be odd; `threads` row bands are filtered in parallel. `stop` is asked before each
/// row (from every thread); once it says true the filter gives up and returns `None`.
pub fn majority(
    data: ArrayView2<'_, u16>,
    nodata: u16,
    size: usize,
    threads: usize,
    stop: &(dyn Fn() -> bool + Sync),
) -> Option<Array2<u16>> {
    let (h, w) = data.dim();
    let mut out = Array2::from_elem((h, w), nodata);
    if h == 0 || w == 0 {
        return Some(out);
    }
    let threads = threads.clamp(1, h);
    if threads == 1 {
        filter_rows(data, nodata, size, 0, out.view_mut(), stop);
    } else {
        let band = h.div_ceil(threads);
        std::thread::scope(|s| {
            for (i, chunk) in out.axis_chunks_iter_mut(Axis(0), band).enumerate() {
                s.spawn(move || filter_rows(data, nodata, size, i * band, chunk, stop));
            }
        });
    }
    (!stop()).then_some(out)
}

/// Filters rows `row0 ..` of `data` into `out` (whose first row is `row0`), until `stop` says
/// true.
fn filter_rows(
    data: ArrayView2<'_, u16>,
    nodata: u16,
    size: usize,
    row0: usize,
    mut out: ArrayViewMut2<'_, u16>,
    stop: &(dyn Fn() -> bool + Sync),
) {
    let (h, w) = data.dim();
    let r = size / 2;
    // Votes per class id, and the ids touched, so that resetting costs the window, not the map.
    let mut votes: Vec<u32> = Vec::new();
    let mut touched: Vec<u16> = Vec::with_capacity(size * size);
    for ((dy, x), o) in out.indexed_iter_mut() {
        if x == 0 && stop() {
            return;
        }
        let y = row0 + dy;
        let centre = data[[y, x]];
        if centre == nodata {
            *o = nodata;
            continue;
        }
        for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
            for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                let v = data[[yy, xx]];
                if v == nodata {
                    continue;
                }
                let i = v as usize;
                if i >= votes.len() {
                    votes.resize(i + 1, 0);
                }
                if votes[i] == 0 {
                    touched.push(v);
                }
                votes[i] += 1;
            }
        }
        let centre_votes = votes[centre as usize];
        let mut best = (centre_votes, centre);
        for &c in &touched {
            let n = votes[c as usize];
            if n > best.0 || (n == best.0 && best.1 != centre && c < best.1) {
                best = (n, c);
            }
        }
        *o = best.1;
        for &c in &touched {
            votes[c as usize] = 0;
        }
        touched.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_plugin::ndarray::array;

    const N: u16 = 65535;

    fn majority(
        data: ArrayView2<'_, u16>,
        nodata: u16,
        size: usize,
        threads: usize,
    ) -> Array2<u16> {
        super::majority(data, nodata, size, threads, &|| false).unwrap()
    }

    #[test]
    fn removes_isolated_pixels() {
        let a = array![[1, 1, 1, 1], [1, 2, 1, 1], [1, 1, 1, 3], [1, 1, 1, 1u16]];
        let out = majority(a.view(), N, 3, 1);
        assert_eq!(out, Array2::from_elem((4, 4), 1));
    }

    #[test]
    fn nodata_stays_nodata_and_does_not_vote() {
        // The centre's neighbours are 4 nodata, 3 of class 2 and 1 of class 1: class 2 wins
        // although nodata is the most frequent value in the window.
        let a = array![[N, N, 2], [N, 1, 2], [N, 1, 2u16]];
        let out = majority(a.view(), N, 3, 1);
        assert_eq!(out[[1, 1]], 2);
        for (y, x) in [(0, 0), (0, 1), (1, 0), (2, 0)] {
            assert_eq!(out[[y, x]], N, "({y}, {x}) stays nodata");
        }
        // Top-right (2) sees 2, 2, 1 and two nodata: 2 wins.
        assert_eq!(out[[0, 2]], 2);
    }

    #[test]
    fn ties_keep_the_centre_else_the_smallest_id() {
        // Centre 5 has 2 votes (itself and one more), so does 7: the centre is kept.
        let a = array![[5, 7, N], [7, 5, N], [N, N, N]];
        assert_eq!(majority(a.view(), N, 3, 1)[[1, 1]], 5);
        // Centre 9 has 1 vote; 4 and 3 have 2 each: the smallest id (3) wins.
        let b = array![[4, 4, N], [3, 9, N], [3, N, N]];
        assert_eq!(majority(b.view(), N, 3, 1)[[1, 1]], 3);
    }

    #[test]
    fn a_known_map_with_a_five_by_five_window() {
        // A 6 x 6 map: left half class 0, right half class 1, one speckle of 2 in each half,
        // nodata in a corner.
        let a = array![
            [N, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 2, 1],
            [0, 2, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1u16],
        ];
        let out3 = majority(a.view(), N, 3, 1);
        let want3 = array![
            [N, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1, 1u16],
        ];
        assert_eq!(out3, want3);
        // With 5 x 5 windows the border columns 2 and 3 see 3 columns of their own class and
        // 2 of the other, so the edge stays where it is.
        assert_eq!(majority(a.view(), N, 5, 1), want3);
    }

    #[test]
    fn threads_do_not_change_the_result() {
        let a = Array2::from_shape_fn((37, 23), |(y, x)| ((y * 7 + x * 13) % 5) as u16);
        let one = majority(a.view(), N, 5, 1);
        for t in [2, 3, 8, 100] {
            assert_eq!(majority(a.view(), N, 5, t), one);
        }
        assert_eq!(
            majority(Array2::<u16>::zeros((0, 4)).view(), N, 3, 4).dim(),
            (0, 4)
        );
    }

    #[test]
    fn it_stops_when_asked() {
        let a = Array2::from_shape_fn((40, 40), |(y, x)| ((y + x) % 3) as u16);
        let rows = std::sync::atomic::AtomicUsize::new(0);
        let stop = || rows.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 5;
        assert!(super::majority(a.view(), N, 3, 2, &stop).is_none());
        assert!(rows.into_inner() < 20, "it gave up early");
    }
}
