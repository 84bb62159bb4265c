//! The labelled pixels `classifier-fit` trains and tests on: a seeded sample of the same size
//! for every class, split into training and held-out rows.
//!
//! Each labelled pixel gets a key, a 64-bit hash of the seed and its index on the grid
//! (row-major). A class's sample is its `samples_per_class` pixels with the smallest keys (all of
//! them when it has fewer), and the first `round(holdout x m)` of those in key order are held
//! out (at most `m - 1`, so that every class keeps a training row). The keys are uniform, so both
//! are simple random samples of the class, spread over the scene; they depend only on the seed
//! and the pixels' positions, never on the thread count or the order the pixels are offered in.

use std::collections::BinaryHeap;

/// Mixed into the seed for the keys, so that they are independent of other seeded streams.
const STREAM: u64 = 0x434C_4153_5346_5954;

/// The key of pixel `pixel` (its row-major index on the grid) under `seed` (SplitMix64 of both).
pub fn pixel_key(seed: u64, pixel: u64) -> u64 {
    crate::kmeans::sample::stream_key(STREAM, seed, pixel)
}

/// The rows of a matrix chosen for training and for the held-out test, each with its class (an
/// index into the classes), in row order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Their classes.
    pub train_class: Vec<u16>,
    /// Held-out rows.
    pub holdout: Vec<usize>,
    /// Their classes.
    pub holdout_class: Vec<u16>,
}

/// Draws the sample class by class as pixels are offered: memory holds `per_class` candidates
/// per class, never every labelled pixel.
#[derive(Debug, Clone)]
pub struct Sampler {
    seed: u64,
    per_class: usize,
    /// Per class, a max-heap of `(key, pixel, row)`: the smallest keys seen so far.
    kept: Vec<BinaryHeap<(u64, u64, usize)>>,
    /// Per class, the labelled pixels offered.
    offered: Vec<u64>,
}

impl Sampler {
    /// An empty sample of `per_class` pixels for each of `classes` classes.
    pub fn new(seed: u64, classes: usize, per_class: usize) -> Self {
        Sampler {
            seed,
            per_class,
            kept: vec![BinaryHeap::new(); classes],
            offered: vec![0; classes],
        }
    }

    /// Offers matrix row `row`, grid pixel `pixel`, of class `class` (an index below the
    /// number of classes; others are ignored).
    pub fn offer(&mut self, pixel: u64, row: usize, class: u16) {
        let Some(heap) = self.kept.get_mut(usize::from(class)) else {
            return;
        };
        self.offered[usize::from(class)] += 1;
        let entry = (pixel_key(self.seed, pixel), pixel, row);
        if heap.len() < self.per_class {
            heap.push(entry);
        } else if heap.peek().is_some_and(|top| entry < *top) {
            heap.pop();
            heap.push(entry);
        }
    }

    /// Labelled pixels offered per class.
    pub fn offered(&self) -> &[u64] {
        &self.offered
    }

    /// The training and held-out rows, `holdout` (in [0, 1)) of each class's sample held out.
    pub fn split(self, holdout: f64) -> Split {
        let mut train: Vec<(usize, u16)> = Vec::new();
        let mut held: Vec<(usize, u16)> = Vec::new();
        for (class, heap) in self.kept.into_iter().enumerate() {
            let chosen = heap.into_sorted_vec();
            let m = chosen.len();
            let h = ((holdout * m as f64).round() as usize).min(m.saturating_sub(1));
            for (i, &(_, _, row)) in chosen.iter().enumerate() {
                let to = if i < h { &mut held } else { &mut train };
                to.push((row, class as u16));
            }
        }
        train.sort_unstable();
        held.sort_unstable();
        Split {
            train_class: train.iter().map(|&(_, c)| c).collect(),
            train: train.into_iter().map(|(r, _)| r).collect(),
            holdout_class: held.iter().map(|&(_, c)| c).collect(),
            holdout: held.into_iter().map(|(r, _)| r).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 000 pixels: class 0 on 70 %, class 1 on 25 %, class 2 on 5 % (by pixel index), row
    /// = pixel.
    fn sampler(seed: u64, per_class: usize, order: impl Iterator<Item = u64>) -> Sampler {
        let mut s = Sampler::new(seed, 3, per_class);
        for p in order {
            let class = match p % 20 {
                0..=13 => 0,
                14..=18 => 1,
                _ => 2,
            };
            s.offer(p, p as usize, class);
        }
        s
    }

    #[test]
    fn balanced_seeded_and_disjoint() {
        let s = sampler(7, 300, 0..10_000);
        assert_eq!(s.offered(), &[7000, 2500, 500]);
        let split = s.split(0.3);
        let per_class = |rows: &[u16], c: u16| rows.iter().filter(|&&k| k == c).count();
        for c in 0..3 {
            assert_eq!(per_class(&split.train_class, c), 210, "class {c}");
            assert_eq!(per_class(&split.holdout_class, c), 90, "class {c}");
        }
        // Rows in order, each with its own class, none both trained on and held out.
        assert!(split.train.windows(2).all(|w| w[0] < w[1]));
        assert!(split.holdout.windows(2).all(|w| w[0] < w[1]));
        for (rows, classes) in [
            (&split.train, &split.train_class),
            (&split.holdout, &split.holdout_class),
        ] {
            for (&r, &c) in rows.iter().zip(classes.iter()) {
                let expected = match r % 20 {
                    0..=13 => 0,
                    14..=18 => 1,
                    _ => 2,
                };
                assert_eq!(c, expected);
            }
        }
        assert!(split
            .train
            .iter()
            .all(|r| split.holdout.binary_search(r).is_err()));

        // The same pixels in any order give the same sample; another seed another one.
        let again = sampler(7, 300, (0..10_000).rev()).split(0.3);
        assert_eq!(again, split);
        let other = sampler(8, 300, 0..10_000).split(0.3);
        assert_ne!(other.train, split.train);
        // Spread over the class, not its first pixels.
        assert!(split.train.iter().any(|&r| r > 9000) && split.train.iter().any(|&r| r < 1000));
    }

    #[test]
    fn a_small_class_keeps_all_its_pixels_and_one_for_training() {
        let mut s = Sampler::new(1, 2, 50);
        for p in 0..20 {
            s.offer(p, p as usize, 0);
        }
        s.offer(100, 20, 1);
        s.offer(7, 21, 9);
        let split = s.split(0.5);
        assert_eq!(split.train.len() + split.holdout.len(), 21);
        assert_eq!(split.holdout.len(), 10);
        assert!(
            split.train.contains(&20),
            "the lone pixel of class 1 is trained on"
        );
        assert!(!split.train.contains(&21), "an unknown class is ignored");
        let none = Sampler::new(1, 1, 5);
        assert_eq!(none.split(0.3), Split::default());
    }
}
