//! CART decision trees (Gini impurity) and random forests of them, grown deterministically.
//!
//! Not linfa: linfa-trees 0.8 keeps class frequencies in `HashMap`s with std's randomly seeded
//! hasher and iterates them to pick a leaf's class (ties go to whichever class the map yields
//! last) and to sum Gini impurities (in f32, in map order), so near-equal splits and tied
//! leaves can come out differently from one process to the next; it has no per-split feature
//! sampling (what makes a random forest) and scans every training row at every node.
//! linfa-ensemble 0.8 builds on it, votes through a `HashMap` too (ties again in hash order),
//! draws one feature subset per tree, unwraps fit errors and cannot be serialized. flow's models
//! must be the same bit for bit for a seed in every run and on any number of threads.
//!
//! Here class counts are integers, a split's quality is computed from them in a fixed order, and
//! ties go to the first candidate (features in the order drawn, then the lowest threshold) and
//! to the lowest class. Each tree draws its bootstrap sample and its features from its own
//! Xoshiro256++ stream, seeded from the forest's seed and the tree's index, so trees grow in
//! parallel in any order and the forest is the same.

use flow_core::Tree;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::error::MlError;

/// Training rows: `n x features` values, row-major, and each row's class.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    /// The values.
    pub x: &'a [f32],
    /// Features per row.
    pub features: usize,
    /// The class (an index below `classes`) of each row.
    pub y: &'a [u16],
    /// Number of classes.
    pub classes: usize,
}

impl Data<'_> {
    fn value(&self, row: u32, feature: usize) -> f32 {
        self.x[row as usize * self.features + feature]
    }
}

/// How a tree grows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// The deepest a leaf may be; `None` for no limit.
    pub max_depth: Option<usize>,
    /// The fewest rows a leaf may hold, >= 1.
    pub min_samples_leaf: usize,
    /// Features drawn at each split, 1..=features; all of them, in order, when equal to the
    /// feature count.
    pub features_per_split: usize,
}

/// The seed of tree `index` of a forest seeded `seed` (SplitMix64 of both).
fn tree_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed
        .wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x5452_4545_5F53_4545);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random forest of `trees` trees, each on a bootstrap sample (n rows drawn with replacement)
/// of the `n` rows of `data`; with `bootstrap` false, every tree sees every row once (a single
/// decision tree).
///
/// # Errors
/// [`MlError::Cancelled`] when `cancelled` says so between trees.
pub fn forest(
    data: &Data<'_>,
    growth: &Growth,
    seed: u64,
    trees: usize,
    bootstrap: bool,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<Tree>, MlError> {
    let n = data.y.len();
    (0..trees)
        .into_par_iter()
        .map(|t| {
            if cancelled() {
                return Err(MlError::Cancelled);
            }
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(tree_seed(seed, t));
            let rows: Vec<u32> = if bootstrap {
                (0..n).map(|_| rng.gen_range(0..n) as u32).collect()
            } else {
                (0..n as u32).collect()
            };
            Ok(grow(data, rows, growth, &mut rng))
        })
        .collect()
}

/// The class with the most votes (ties to the lowest index).
fn majority(counts: &[u32]) -> u16 {
    let mut best = 0;
    for (c, &v) in counts.iter().enumerate() {
        if v > counts[best] {
            best = c;
        }
    }
    best as u16
}

/// A node waiting to be grown: its rows `rows[start..end]`, its depth, and where its parent
/// points at it.
struct Pending {
    start: usize,
    end: usize,
    depth: usize,
    parent: Option<(usize, bool)>,
}

/// The best split of a node found so far.
#[derive(Debug, Clone, Copy)]
struct Best {
    feature: usize,
    threshold: f32,
    /// Sum over both sides of (class count squared / side size): larger is purer.
    score: f64,
    left: usize,
    /// The left side's sum of squared class counts, for the exact gain test.
    left_sq: u64,
    right_sq: u64,
}

/// Grows one tree on `rows` (indices into `data`, repeats allowed), depth first; nodes are
/// numbered in preorder, so every child comes after its parent.
pub fn grow(
    data: &Data<'_>,
    mut rows: Vec<u32>,
    growth: &Growth,
    rng: &mut Xoshiro256PlusPlus,
) -> Tree {
    let k = data.classes;
    let f = data.features;
    let mut tree = Tree {
        feature: Vec::new(),
        threshold: Vec::new(),
        left: Vec::new(),
        right: Vec::new(),
        class: Vec::new(),
    };
    let mut stack = vec![Pending {
        start: 0,
        end: rows.len(),
        depth: 0,
        parent: None,
    }];
    let mut counts = vec![0u32; k];
    let mut left = vec![0u32; k];
    let mut sorted: Vec<(f32, u16)> = Vec::with_capacity(rows.len());
    let mut order: Vec<usize> = (0..f).collect();
    while let Some(node) = stack.pop() {
        let id = tree.feature.len();
        if let Some((parent, is_left)) = node.parent {
            if is_left {
                tree.left[parent] = id as u32;
            } else {
                tree.right[parent] = id as u32;
            }
        }
        let here = &rows[node.start..node.end];
        let n = here.len();
        counts.iter_mut().for_each(|c| *c = 0);
        for &r in here {
            counts[usize::from(data.y[r as usize])] += 1;
        }
        let class = majority(&counts);
        tree.feature.push(-1);
        tree.threshold.push(0.0);
        tree.left.push(0);
        tree.right.push(0);
        tree.class.push(class);
        let pure = counts.iter().filter(|&&c| c > 0).count() <= 1;
        if pure
            || n < 2 * growth.min_samples_leaf
            || growth.max_depth.is_some_and(|d| node.depth >= d)
        {
            continue;
        }
        let parent_sq: u64 = counts.iter().map(|&c| u64::from(c) * u64::from(c)).sum();

        // Features in a random order; stop once `features_per_split` were looked at and a split
        // was found (as scikit-learn, it looks further when none of them can split the node).
        let draw = growth.features_per_split < f;
        let mut best: Option<Best> = None;
        for j in 0..f {
            if j >= growth.features_per_split && best.is_some() {
                break;
            }
            if draw {
                let pick = rng.gen_range(j..f);
                order.swap(j, pick);
            }
            let feature = order[j];
            sorted.clear();
            sorted.extend(
                here.iter()
                    .map(|&r| (data.value(r, feature), data.y[r as usize])),
            );
            sorted.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            left.iter_mut().for_each(|c| *c = 0);
            let (mut left_sq, mut right_sq) = (0u64, parent_sq);
            for i in 0..n - 1 {
                let c = usize::from(sorted[i].1);
                // (l + 1)^2 - l^2 = 2l + 1 and r^2 - (r - 1)^2 = 2r - 1, with r the right count
                // before the move.
                let l = u64::from(left[c]);
                let r = u64::from(counts[c] - left[c]);
                left_sq += 2 * l + 1;
                right_sq -= 2 * r - 1;
                left[c] += 1;
                let (lo, hi) = (sorted[i].0, sorted[i + 1].0);
                // Only between distinct values, so that equal values stay together.
                if lo >= hi {
                    continue;
                }
                let nl = i + 1;
                let nr = n - nl;
                if nl < growth.min_samples_leaf || nr < growth.min_samples_leaf {
                    continue;
                }
                let score = left_sq as f64 / nl as f64 + right_sq as f64 / nr as f64;
                if best.is_none_or(|b| score > b.score) {
                    let mid = ((f64::from(lo) + f64::from(hi)) / 2.0) as f32;
                    best = Some(Best {
                        feature,
                        // The midpoint, unless it rounds up to the upper value.
                        threshold: if mid < hi { mid } else { lo },
                        score,
                        left: nl,
                        left_sq,
                        right_sq,
                    });
                }
            }
        }
        let Some(b) = best else {
            continue;
        };
        // Split only when it makes the node purer: left_sq / nl + right_sq / nr > parent_sq / n,
        // compared exactly in integers.
        let (nl, nr) = (b.left as u128, (n - b.left) as u128);
        let children = (u128::from(b.left_sq) * nr + u128::from(b.right_sq) * nl) * n as u128;
        if children <= u128::from(parent_sq) * nl * nr {
            continue;
        }
        // Rows at or below the threshold first.
        let slice = &mut rows[node.start..node.end];
        let mut lo = 0;
        for i in 0..slice.len() {
            if data.value(slice[i], b.feature) <= b.threshold {
                slice.swap(lo, i);
                lo += 1;
            }
        }
        debug_assert_eq!(lo, b.left);
        tree.feature[id] = b.feature as i32;
        tree.threshold[id] = b.threshold;
        let mid = node.start + lo;
        // Right pushed first so that the left child is grown (and numbered) next.
        stack.push(Pending {
            start: mid,
            end: node.end,
            depth: node.depth + 1,
            parent: Some((id, false)),
        });
        stack.push(Pending {
            start: node.start,
            end: mid,
            depth: node.depth + 1,
            parent: Some((id, true)),
        });
    }
    tree
}

/// The class (an index below `classes`) that `trees` vote for `row`: most votes, ties to the
/// lowest index. `votes` is scratch space of `classes` counters.
pub fn vote(trees: &[Tree], row: &[f32], votes: &mut [u32]) -> u16 {
    votes.iter_mut().for_each(|v| *v = 0);
    for t in trees {
        if let Some(v) = t.predict(row).and_then(|c| votes.get_mut(usize::from(c))) {
            *v += 1;
        }
    }
    majority(votes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two features; class 0 below x = 0.5, class 1 above, except class 2 where y > 0.8.
    fn data() -> (Vec<f32>, Vec<u16>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..20 {
            for j in 0..10 {
                let (a, b) = (i as f32 / 20.0, j as f32 / 10.0 + 0.05);
                x.extend([a, b]);
                y.push(if b > 0.8 {
                    2
                } else if a < 0.5 {
                    0
                } else {
                    1
                });
            }
        }
        (x, y)
    }

    fn predict_all(trees: &[Tree], x: &[f32]) -> Vec<u16> {
        let mut votes = vec![0; 3];
        x.chunks(2).map(|r| vote(trees, r, &mut votes)).collect()
    }

    #[test]
    fn a_tree_separates_separable_classes_exactly() {
        let (x, y) = data();
        let d = Data {
            x: &x,
            features: 2,
            y: &y,
            classes: 3,
        };
        let growth = Growth {
            max_depth: None,
            min_samples_leaf: 1,
            features_per_split: 2,
        };
        let trees = forest(&d, &growth, 0, 1, false, &|| false).unwrap();
        trees[0].check(2, 3).unwrap();
        assert_eq!(predict_all(&trees, &x), y);
        // Gini's greedy first split is x at the midpoint of 0.45 and 0.5 (it separates 0 from 1
        // and leaves a third of each side to class 2), then y on each side.
        assert_eq!(trees[0].len(), 7, "{:?}", trees[0]);
        assert_eq!((trees[0].feature[0], trees[0].threshold[0]), (0, 0.475));
        assert_eq!(trees[0].depth(), 2);

        let stump = Growth {
            max_depth: Some(1),
            ..growth
        };
        let trees = forest(&d, &stump, 0, 1, false, &|| false).unwrap();
        assert_eq!(trees[0].len(), 3, "one split");
    }

    #[test]
    fn a_forest_is_the_same_for_a_seed_on_any_thread_count() {
        let (x, y) = data();
        let d = Data {
            x: &x,
            features: 2,
            y: &y,
            classes: 3,
        };
        let growth = Growth {
            max_depth: None,
            min_samples_leaf: 2,
            features_per_split: 1,
        };
        let on = |threads: usize, seed: u64| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| forest(&d, &growth, seed, 15, true, &|| false).unwrap())
        };
        let one = on(1, 5);
        assert_eq!(one.len(), 15);
        assert_eq!(one, on(3, 5));
        assert_ne!(one, on(1, 6), "another seed, other trees");
        for t in &one {
            t.check(2, 3).unwrap();
        }
        let right = predict_all(&one, &x)
            .iter()
            .zip(&y)
            .filter(|(a, b)| a == b)
            .count();
        assert!(right >= 190, "{right} of 200 rows");
        assert_eq!(
            forest(&d, &growth, 5, 15, true, &|| true).unwrap_err(),
            MlError::Cancelled
        );
    }

    #[test]
    fn constant_features_make_a_leaf_of_the_majority() {
        let x = vec![1.0f32; 6];
        let y = vec![1, 0, 2, 0, 1, 2];
        let d = Data {
            x: &x,
            features: 1,
            y: &y,
            classes: 3,
        };
        let growth = Growth {
            max_depth: None,
            min_samples_leaf: 1,
            features_per_split: 1,
        };
        let t = &forest(&d, &growth, 0, 1, false, &|| false).unwrap()[0];
        assert_eq!((t.len(), t.class[0]), (1, 0), "ties to the lowest class");
        assert_eq!(vote(&[], &[0.0], &mut [0, 0]), 0);
    }
}
