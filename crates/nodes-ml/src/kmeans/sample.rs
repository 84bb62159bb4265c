//! The rows `kmeans-fit` fits on when `sample` is set: a seeded sample of valid pixels that does
//! not depend on how the scene was cut into windows.
//!
//! Each pixel gets a key, a 64-bit hash of the seed and its index on the whole grid (row-major);
//! the sample is the `m` pixels with the smallest keys, in grid order. A pixel's key is the same
//! whether the raster is held whole or streamed window by window in any order, so both give the
//! same sample, row for row. The keys are uniform, so the sample is spread over the scene as a
//! simple random sample is.
//!
//! The `sample` node keeps the same rows as a matrix of their own ([`crate::sample`]), so that a
//! fit on them without `sample` is the fit with it; both draw from a windowed matrix through
//! [`draw_windowed`].

use flow_core::deferred::Deferred;
use flow_core::{Matrix, NodeError, RunContext, Value};
use ndarray::{Array2, ArrayView2, Axis};

use super::Sample;
use crate::error::MlError;

/// Mixed into the seed for the sample's keys, so that they are independent of the init stream.
const SAMPLE_STREAM: u64 = 0x5A4D_504C_455F_5354;

/// The key of pixel `pixel` (its row-major index on the whole grid) under `seed` (SplitMix64 of
/// both).
pub fn pixel_key(seed: u64, pixel: u64) -> u64 {
    stream_key(SAMPLE_STREAM, seed, pixel)
}

/// The key of pixel `pixel` under `seed` in the stream `stream` (SplitMix64 of the three): each
/// seeded sample of pixels mixes in a stream of its own, so that samples are independent.
pub fn stream_key(stream: u64, seed: u64, pixel: u64) -> u64 {
    let mut z = (seed ^ stream)
        .wrapping_add(pixel.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The grid indices (row-major) of the pixels that have a row, in row order.
pub fn valid_pixels(
    valid: &ArrayView2<'_, bool>,
    row_off: usize,
    col_off: usize,
    width: usize,
) -> Vec<u64> {
    let mut out = Vec::new();
    for ((y, x), &v) in valid.indexed_iter() {
        if v {
            out.push(((row_off + y) * width + col_off + x) as u64);
        }
    }
    out
}

/// Picks the sample from a whole matrix whose rows are the pixels `pixels`: the indices of the
/// chosen rows, in row order. All rows when the sample is not smaller.
pub fn choose(seed: u64, pixels: &[u64], m: usize) -> Vec<usize> {
    let n = pixels.len();
    if m >= n {
        return (0..n).collect();
    }
    let mut keyed: Vec<(u64, u64, usize)> = pixels
        .iter()
        .enumerate()
        .map(|(i, &p)| (pixel_key(seed, p), p, i))
        .collect();
    if m > 0 {
        keyed.select_nth_unstable(m - 1);
    }
    let mut chosen: Vec<usize> = keyed[..m].iter().map(|&(_, _, i)| i).collect();
    chosen.sort_unstable();
    chosen
}

/// The matrix a deferred value describes (its template: features, scaling, grid).
///
/// # Errors
/// [`NodeError::Input`] on `port` when the value is not a Matrix.
pub fn matrix_template<'a>(input: &'a Deferred, port: &str) -> Result<&'a Matrix, NodeError> {
    match input.template.as_ref() {
        Value::Matrix(m) => Ok(m),
        other => Err(NodeError::Input {
            port: port.into(),
            message: format!("expected a Matrix, got {}", other.value_type()),
        }),
    }
}

/// A sample drawn from a windowed matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// The valid pixels seen: the rows of the whole matrix.
    pub count: usize,
    /// The grid index (row-major on the whole grid) of each sampled row, ascending.
    pub pixels: Vec<u64>,
    /// The sampled rows, in grid order: the rows [`choose`] picks from the whole matrix.
    pub rows: Array2<f32>,
}

/// Draws `sample` under `seed` from a deferred matrix, window by window on the run's threads:
/// memory holds the sample (each worker's share while it reads, up to `2 m` rows each) and one
/// window per thread, never the whole matrix. `kind` names the node in messages.
///
/// # Errors
/// A window that is not a matrix of the template's features or whose rows do not match its
/// mask ([`NodeError::Failed`]), a non-finite value ([`MlError::Shape`], exit 3), and what
/// computing a window fails with.
pub fn draw_windowed(
    ctx: &RunContext,
    input: &Deferred,
    features: usize,
    seed: u64,
    sample: Sample,
    kind: &str,
) -> Result<Drawn, NodeError> {
    let width = input.grid().width;
    let f = features;
    let mut sampling = Sampling::new(seed, sample, f);
    for _ in 0..sampling.passes() {
        let partials = input.fold(
            ctx,
            || sampling.partial(),
            |part, w, v| {
                let Value::Matrix(m) = v else {
                    return Err(NodeError::Failed(format!(
                        "{kind}: a window of the input is not a Matrix"
                    )));
                };
                let pixels = valid_pixels(&m.valid.view(), w.row, w.col, width);
                if pixels.len() != m.data.nrows() || m.data.ncols() != f {
                    return Err(NodeError::Failed(format!(
                        "{kind}: a window's matrix has {} rows of {} features for {} valid pixels of {f} features",
                        m.data.nrows(),
                        m.data.ncols(),
                        pixels.len()
                    )));
                }
                if let Some(i) = m.data.iter().position(|v| !v.is_finite()) {
                    return Err(MlError::Shape(format!(
                        "pixel {} of the matrix has a non-finite value; flatten keeps only finite pixels",
                        pixels[i / f]
                    ))
                    .into());
                }
                part.offer(&pixels, &m.data.view());
                Ok(())
            },
        )?;
        for part in &partials {
            sampling.merge(part);
        }
        sampling.next_pass();
    }
    let count = sampling.count() as usize;
    let (pixels, rows) = sampling.finish();
    Ok(Drawn {
        count,
        pixels,
        rows,
    })
}

/// One candidate in a streamed sample: its key, its pixel and where its features are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    key: u64,
    pixel: u64,
    slot: usize,
}

/// A sample gathered window by window: the same rows [`choose`] picks from the whole matrix.
///
/// With a count, one pass keeps the `m` smallest keys seen so far. With a fraction, the first
/// pass counts the valid pixels and the second keeps the `round(p n)` smallest.
///
/// Candidates go into a buffer of up to `2 m` rows; when it is full, the `m` smallest are kept
/// (a selection, linear) and the largest of them becomes the bar a new pixel's key must pass,
/// so most pixels cost a hash and one comparison (memory: `2 m` rows).
#[derive(Debug, Clone)]
pub struct Sampling {
    seed: u64,
    sample: Sample,
    features: usize,
    pass: usize,
    /// Valid pixels seen in the first pass.
    count: u64,
    /// How many rows to keep, once known.
    target: Option<usize>,
    /// The candidates kept so far, in no order.
    kept: Vec<Candidate>,
    /// Their features, `features` values per slot.
    slab: Vec<f32>,
    /// `(key, pixel)` of the largest of the `target` smallest candidates once the buffer was
    /// first trimmed: a pixel at or above it cannot be in the sample.
    bar: Option<(u64, u64)>,
}

impl Sampling {
    /// An empty sample of rows with `features` values.
    pub fn new(seed: u64, sample: Sample, features: usize) -> Self {
        let target = match sample {
            Sample::Count(c) => Some(c),
            Sample::Fraction(_) => None,
        };
        Sampling {
            seed,
            sample,
            features,
            pass: 0,
            count: 0,
            target,
            kept: Vec::new(),
            slab: Vec::new(),
            bar: None,
        }
    }

    /// Passes over the windows the sample needs.
    pub fn passes(&self) -> usize {
        match self.sample {
            Sample::Count(_) => 1,
            Sample::Fraction(_) => 2,
        }
    }

    /// An empty accumulator for the current pass, to fill from one window and merge back.
    pub fn partial(&self) -> Sampling {
        Sampling {
            pass: self.pass,
            target: self.target,
            ..Sampling::new(self.seed, self.sample, self.features)
        }
    }

    /// Offers the rows of one window; `pixels[i]` is the grid index of `rows[i]`.
    pub fn offer(&mut self, pixels: &[u64], rows: &ArrayView2<'_, f32>) {
        let Some(target) = self.target.filter(|_| self.keeps()) else {
            self.count += pixels.len() as u64;
            return;
        };
        if self.pass == 0 {
            self.count += pixels.len() as u64;
        }
        if target == 0 {
            return;
        }
        let f = self.features;
        for (&pixel, row) in pixels.iter().zip(rows.axis_iter(Axis(0))) {
            let key = pixel_key(self.seed, pixel);
            if self.bar.is_some_and(|bar| (key, pixel) >= bar) {
                continue;
            }
            self.kept.push(Candidate {
                key,
                pixel,
                slot: self.kept.len(),
            });
            match row.as_slice() {
                Some(values) => self.slab.extend_from_slice(&values[..f]),
                None => self.slab.extend(row.iter().copied()),
            }
            if self.kept.len() >= target.saturating_mul(2) {
                self.trim(target);
            }
        }
    }

    /// Keeps the `target` smallest candidates (by key, then pixel) and raises the bar to the
    /// largest of them.
    fn trim(&mut self, target: usize) {
        if self.kept.len() <= target || target == 0 {
            return;
        }
        self.kept
            .select_nth_unstable_by_key(target - 1, |c| (c.key, c.pixel));
        self.kept.truncate(target);
        let f = self.features;
        let mut slab = Vec::with_capacity(target.saturating_mul(2).saturating_mul(f));
        for (i, c) in self.kept.iter_mut().enumerate() {
            slab.extend_from_slice(&self.slab[c.slot * f..(c.slot + 1) * f]);
            c.slot = i;
        }
        self.slab = slab;
        self.bar = self.kept.iter().map(|c| (c.key, c.pixel)).max();
    }

    /// Whether this pass keeps rows (the counting pass of a fraction does not).
    fn keeps(&self) -> bool {
        match self.sample {
            Sample::Count(_) => true,
            Sample::Fraction(_) => self.pass == 1,
        }
    }

    /// Adds a partial sample of the same pass.
    pub fn merge(&mut self, other: &Sampling) {
        if self.pass == 0 {
            self.count += other.count;
        }
        for c in other.kept.iter() {
            let at = c.slot * other.features;
            let row = ndarray::ArrayView2::from_shape(
                (1, self.features),
                &other.slab[at..at + self.features],
            )
            .expect("a slot holds one row");
            let before = self.count;
            self.offer(&[c.pixel], &row);
            self.count = before;
        }
    }

    /// Ends the current pass.
    pub fn next_pass(&mut self) {
        if self.pass == 0 {
            if let Sample::Fraction(_) = self.sample {
                self.target = Some(self.sample.size(self.count as usize));
            }
        }
        self.pass += 1;
    }

    /// Valid pixels seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sampled rows, in grid order, and their pixels.
    pub fn finish(mut self) -> (Vec<u64>, Array2<f32>) {
        if let Some(target) = self.target {
            self.trim(target);
        }
        let mut kept: Vec<Candidate> = self.kept;
        kept.sort_unstable_by_key(|c| c.pixel);
        let f = self.features;
        let mut data = Vec::with_capacity(kept.len() * f);
        for c in &kept {
            data.extend_from_slice(&self.slab[c.slot * f..(c.slot + 1) * f]);
        }
        let pixels = kept.iter().map(|c| c.pixel).collect();
        let data =
            Array2::from_shape_vec((kept.len(), f), data).expect("rows of `features` values");
        (pixels, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    /// A 37 x 53 scene with 3 features and a hole; the sample streamed in windows of `size`
    /// (visited backwards) equals the one chosen from the whole matrix.
    #[test]
    fn a_streamed_sample_equals_the_whole_one_whatever_the_windows() {
        let (h, w, f) = (37usize, 53usize, 3usize);
        let valid = Array2::from_shape_fn((h, w), |(y, x)| (y * 7 + x * 3) % 11 != 0);
        let value = |y: usize, x: usize, j: usize| (y * 1000 + x * 10 + j) as f32;
        let pixels = valid_pixels(&valid.view(), 0, 0, w);
        let rows = Array2::from_shape_fn((pixels.len(), f), |(i, j)| {
            let p = pixels[i] as usize;
            value(p / w, p % w, j)
        });
        for sample in [
            Sample::Count(100),
            Sample::Fraction(0.3),
            Sample::Count(5000),
        ] {
            let m = sample.size(pixels.len());
            let chosen = choose(7, &pixels, m);
            let want = rows.select(Axis(0), &chosen);
            for size in [8usize, 13, 64] {
                let mut s = Sampling::new(7, sample, f);
                let windows: Vec<(usize, usize)> = (0..h)
                    .step_by(size)
                    .flat_map(|y| (0..w).step_by(size).map(move |x| (y, x)))
                    .collect();
                for _ in 0..s.passes() {
                    for &(y, x) in windows.iter().rev() {
                        let (y1, x1) = ((y + size).min(h), (x + size).min(w));
                        let v = valid.slice(s![y..y1, x..x1]);
                        let px = valid_pixels(&v, y, x, w);
                        let r = Array2::from_shape_fn((px.len(), f), |(i, j)| {
                            let p = px[i] as usize;
                            value(p / w, p % w, j)
                        });
                        let mut part = s.partial();
                        part.offer(&px, &r.view());
                        s.merge(&part);
                    }
                    s.next_pass();
                }
                assert_eq!(s.count(), pixels.len() as u64);
                let (got_pixels, got) = s.finish();
                assert_eq!(got_pixels.len(), m, "{sample:?} {size}");
                assert_eq!(got, want, "{sample:?} in windows of {size}");
            }
        }
    }

    #[test]
    fn keys_spread_the_sample_over_the_scene() {
        // A quarter of a 200 x 200 grid: each quadrant gets close to a quarter of it.
        let pixels: Vec<u64> = (0..40_000).collect();
        let chosen = choose(0, &pixels, 10_000);
        let mut quadrants = [0usize; 4];
        for i in chosen {
            let (y, x) = (i / 200, i % 200);
            quadrants[(y / 100) * 2 + x / 100] += 1;
        }
        assert!(
            quadrants.iter().all(|&q| (2300..2700).contains(&q)),
            "{quadrants:?}"
        );
    }
}
