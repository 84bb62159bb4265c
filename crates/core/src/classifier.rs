//! A supervised classifier, as a [`Model`](crate::Model) carries it: what `classifier-fit`
//! fits and `predict` applies.
//!
//! A classifier model is a [`Model`](crate::Model) whose `classifier` is set: its `centroids`
//! are the training means of its classes (one row per class, in the order of
//! [`Classifier::classes`]), its `counts` the training rows per class, and the classifier itself
//! holds the decision trees (none for a nearest-centroid model), the classes' ids as the training
//! labels numbered them, and the held-out evaluation. Everything is plain data, so it goes through
//! the cache's JSON sidecar, the plugin wire format and `write`'s model JSON as it is.

use serde::{Deserialize, Serialize};

use crate::value::ClassInfo;

/// A fitted supervised classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    /// `random-forest`, `decision-tree` or `nearest-centroid`.
    pub method: String,
    /// The classes, in ascending id order: a prediction is one of these ids. Row `i` of the
    /// model's centroids and leaf class `i` of the trees are `classes[i]`.
    pub classes: Vec<ClassInfo>,
    /// The trees: several for a random forest (majority vote, ties to the first class), one for
    /// a decision tree, none for nearest centroid (the nearest row of the model's centroids).
    #[serde(default)]
    pub trees: Vec<Tree>,
    /// How well the model predicts the rows held out of training.
    pub holdout: Holdout,
}

/// One binary decision tree, its nodes in preorder (node 0 is the root) as parallel arrays.
///
/// At an internal node a row goes left when its value of `feature` is at most `threshold`, else
/// right; at a leaf (`feature` = -1) its prediction is `class`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Per node: the feature tested (a column of the matrix), or -1 at a leaf.
    pub feature: Vec<i32>,
    /// Per node: the split value (0 at a leaf).
    pub threshold: Vec<f32>,
    /// Per node: the left child (0 at a leaf).
    pub left: Vec<u32>,
    /// Per node: the right child (0 at a leaf).
    pub right: Vec<u32>,
    /// Per node: the class (an index into [`Classifier::classes`]) of most of its training rows,
    /// the prediction at a leaf.
    pub class: Vec<u16>,
}

impl Tree {
    /// Checks that the tree can be applied to rows of `features` values with `classes` classes:
    /// equal array lengths, at least one node, features and classes in range, and every child
    /// after its parent (so that a walk from the root always ends at a leaf).
    ///
    /// # Errors
    /// What is wrong, for a message.
    pub fn check(&self, features: usize, classes: usize) -> Result<(), String> {
        let n = self.feature.len();
        if n == 0 {
            return Err("a tree has no node".into());
        }
        if [
            self.threshold.len(),
            self.left.len(),
            self.right.len(),
            self.class.len(),
        ]
        .iter()
        .any(|&len| len != n)
        {
            return Err("a tree's node arrays differ in length".into());
        }
        for i in 0..n {
            if usize::from(self.class[i]) >= classes {
                return Err(format!(
                    "node {i} of a tree predicts class {} of {classes}",
                    self.class[i]
                ));
            }
            let f = self.feature[i];
            if f < 0 {
                continue;
            }
            if f as usize >= features {
                return Err(format!(
                    "node {i} of a tree tests feature {f} of {features}"
                ));
            }
            let (l, r) = (self.left[i] as usize, self.right[i] as usize);
            if l <= i || r <= i || l >= n || r >= n {
                return Err(format!(
                    "node {i} of a tree has children {l} and {r}, not after it among {n} nodes"
                ));
            }
        }
        Ok(())
    }

    /// The class (an index into [`Classifier::classes`]) of `row`; `None` only for a tree that
    /// fails [`Tree::check`].
    pub fn predict(&self, row: &[f32]) -> Option<u16> {
        let mut i = 0usize;
        // Children come after their parent, so a walk visits at most every node once.
        for _ in 0..self.feature.len() {
            let f = *self.feature.get(i)?;
            if f < 0 {
                return self.class.get(i).copied();
            }
            let v = *row.get(f as usize)?;
            i = if v <= *self.threshold.get(i)? {
                *self.left.get(i)?
            } else {
                *self.right.get(i)?
            } as usize;
        }
        None
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.feature.len()
    }

    /// True for a tree without nodes (never a valid one).
    pub fn is_empty(&self) -> bool {
        self.feature.is_empty()
    }

    /// The depth of the deepest leaf (0 for a tree that is one leaf).
    pub fn depth(&self) -> usize {
        let mut depth = vec![0usize; self.len()];
        let mut max = 0;
        for i in 0..self.len() {
            if self.feature[i] >= 0 {
                let below = depth[i] + 1;
                for c in [self.left[i] as usize, self.right[i] as usize] {
                    if let Some(d) = depth.get_mut(c) {
                        *d = below;
                        max = max.max(below);
                    }
                }
            }
        }
        max
    }
}

/// How a classifier did on the training pixels it did not see.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Holdout {
    /// Held-out rows.
    pub rows: u64,
    /// The fraction of held-out rows predicted as their label; `None` without held-out rows.
    pub overall_accuracy: Option<f64>,
    /// Per class (in the order of [`Classifier::classes`]): the fraction of its held-out rows
    /// predicted as it; `None` for a class without held-out rows.
    pub recall: Vec<Option<f64>>,
    /// Held-out rows per (label, prediction), both in the order of [`Classifier::classes`].
    pub confusion: Vec<Vec<u64>>,
}

impl Holdout {
    /// The evaluation of predictions against labels, both as indices into `classes` classes.
    pub fn of(labels: &[u16], predictions: &[u16], classes: usize) -> Holdout {
        let mut confusion = vec![vec![0u64; classes]; classes];
        for (&l, &p) in labels.iter().zip(predictions) {
            if let Some(cell) = confusion
                .get_mut(usize::from(l))
                .and_then(|row| row.get_mut(usize::from(p)))
            {
                *cell += 1;
            }
        }
        let rows: u64 = confusion.iter().flatten().sum();
        let right: u64 = (0..classes).map(|c| confusion[c][c]).sum();
        let recall = confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let n: u64 = row.iter().sum();
                (n > 0).then(|| row[c] as f64 / n as f64)
            })
            .collect();
        Holdout {
            rows,
            overall_accuracy: (rows > 0).then(|| right as f64 / rows as f64),
            recall,
            confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 0.5 -> class 0; else x1 <= 2 -> class 1, else class 2.
    fn tree() -> Tree {
        Tree {
            feature: vec![0, -1, 1, -1, -1],
            threshold: vec![0.5, 0.0, 2.0, 0.0, 0.0],
            left: vec![1, 0, 3, 0, 0],
            right: vec![2, 0, 4, 0, 0],
            class: vec![1, 0, 2, 1, 2],
        }
    }

    #[test]
    fn a_row_walks_to_its_leaf() {
        let t = tree();
        t.check(2, 3).unwrap();
        assert_eq!(
            t.predict(&[0.5, 9.0]),
            Some(0),
            "at the threshold goes left"
        );
        assert_eq!(t.predict(&[0.6, 2.0]), Some(1));
        assert_eq!(t.predict(&[0.6, 2.1]), Some(2));
        assert_eq!(t.depth(), 2);
    }

    #[test]
    fn a_malformed_tree_is_refused_and_never_loops() {
        let mut t = tree();
        assert!(t.check(1, 3).unwrap_err().contains("feature 1"));
        assert!(t.check(2, 2).unwrap_err().contains("class 2"));
        t.left[2] = 0;
        assert!(t.check(2, 3).unwrap_err().contains("children"));
        assert_eq!(
            t.predict(&[0.6, 0.0]),
            None,
            "a cycle ends without an answer"
        );
        t.class.pop();
        assert!(t.check(2, 3).unwrap_err().contains("length"));
    }

    #[test]
    fn holdout_counts_accuracy_and_recall() {
        let h = Holdout::of(&[0, 0, 1, 1, 1], &[0, 1, 1, 1, 0], 3);
        assert_eq!(h.rows, 5);
        assert_eq!(h.overall_accuracy, Some(0.6));
        assert_eq!(h.recall, vec![Some(0.5), Some(2.0 / 3.0), None]);
        assert_eq!(
            h.confusion,
            vec![vec![1, 1, 0], vec![1, 2, 0], vec![0, 0, 0]]
        );
        assert_eq!(Holdout::of(&[], &[], 2).overall_accuracy, None);
    }
}
