//! The figures of an assessment, from the contingency table of two labelings: overall
//! accuracy, Cohen's kappa and per-class precision / recall / F1 (the map's ids taken as the
//! reference's), the adjusted Rand index and the normalized mutual information (any ids). Each
//! is computed as scikit-learn computes it (`accuracy_score`, `cohen_kappa_score`,
//! `precision_recall_fscore_support`, `adjusted_rand_score`,
//! `normalized_mutual_info_score` with the arithmetic mean), in integers where it can be, so
//! that both agree to the last few bits.

use std::collections::BTreeMap;

/// Pixel counts per (reference id, map id) over the pixels valid in both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Contingency {
    /// Reference ids present, in order (the rows).
    pub rows: Vec<u16>,
    /// Map ids present, in order (the columns).
    pub cols: Vec<u16>,
    /// `counts[r][c]`: pixels of reference `rows[r]` labelled `cols[c]` in the map.
    pub counts: Vec<Vec<u64>>,
}

impl Contingency {
    /// The table of the pairs `(reference, map)`.
    pub(crate) fn of(pairs: impl IntoIterator<Item = (u16, u16)>) -> Self {
        let mut cells: BTreeMap<(u16, u16), u64> = BTreeMap::new();
        for p in pairs {
            *cells.entry(p).or_default() += 1;
        }
        Self::from_cells(&cells)
    }

    /// The table of counted cells.
    pub(crate) fn from_cells(cells: &BTreeMap<(u16, u16), u64>) -> Self {
        let mut rows: Vec<u16> = cells.keys().map(|&(r, _)| r).collect();
        let mut cols: Vec<u16> = cells.keys().map(|&(_, c)| c).collect();
        rows.dedup();
        cols.sort_unstable();
        cols.dedup();
        let mut counts = vec![vec![0u64; cols.len()]; rows.len()];
        for (&(r, c), &n) in cells {
            if let (Ok(i), Ok(j)) = (rows.binary_search(&r), cols.binary_search(&c)) {
                counts[i][j] += n;
            }
        }
        Contingency { rows, cols, counts }
    }

    /// Pixels counted.
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    fn row_sums(&self) -> Vec<u64> {
        self.counts.iter().map(|r| r.iter().sum()).collect()
    }

    fn col_sums(&self) -> Vec<u64> {
        (0..self.cols.len())
            .map(|j| self.counts.iter().map(|r| r[j]).sum())
            .collect()
    }

    /// The same pixels with map id `c` renamed `rename(c)` (cells that then share ids merge).
    pub(crate) fn relabelled(&self, rename: impl Fn(u16) -> u16) -> Self {
        let mut cells = BTreeMap::new();
        for (i, &r) in self.rows.iter().enumerate() {
            for (j, &c) in self.cols.iter().enumerate() {
                if self.counts[i][j] > 0 {
                    *cells.entry((r, rename(c))).or_default() += self.counts[i][j];
                }
            }
        }
        Self::from_cells(&cells)
    }
}

/// Precision, recall and F1 of one class id, and its pixels in the reference and in the map;
/// a figure whose denominator is zero is None.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClassScores {
    /// The class id (shared by reference and map).
    pub id: u16,
    /// Pixels of this id in the reference.
    pub reference_pixels: u64,
    /// Pixels of this id in the map.
    pub map_pixels: u64,
    /// Map pixels of this id that the reference agrees on.
    pub correct: u64,
    /// correct / map_pixels.
    pub precision: Option<f64>,
    /// correct / reference_pixels.
    pub recall: Option<f64>,
    /// The harmonic mean of precision and recall (0 when both are 0).
    pub f1: Option<f64>,
}

/// The figures that read the map's ids as the reference's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Agreement {
    /// Share of pixels whose map id is their reference id.
    pub overall_accuracy: f64,
    /// Cohen's kappa; None when chance agreement is total (one class in both).
    pub kappa: Option<f64>,
    /// Per class id, over the ids of either labeling.
    pub per_class: Vec<ClassScores>,
}

/// Overall accuracy, kappa and per-class scores of `t`, the map's ids taken as the
/// reference's (scikit-learn's `accuracy_score`, `cohen_kappa_score` and
/// `precision_recall_fscore_support` over the union of the labels).
pub(crate) fn agreement(t: &Contingency) -> Agreement {
    let n = t.total();
    let (rs, cs) = (t.row_sums(), t.col_sums());
    let mut ids: Vec<u16> = t.rows.iter().chain(&t.cols).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut diagonal = 0u64;
    // Expected agreement, scaled by n²: Σ row(id) · col(id), exact in integers.
    let mut chance: u128 = 0;
    let per_class = ids
        .iter()
        .map(|&id| {
            let i = t.rows.binary_search(&id).ok();
            let j = t.cols.binary_search(&id).ok();
            let correct = match (i, j) {
                (Some(i), Some(j)) => t.counts[i][j],
                _ => 0,
            };
            let reference_pixels = i.map_or(0, |i| rs[i]);
            let map_pixels = j.map_or(0, |j| cs[j]);
            diagonal += correct;
            chance += u128::from(reference_pixels) * u128::from(map_pixels);
            let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
            let precision = ratio(correct, map_pixels);
            let recall = ratio(correct, reference_pixels);
            let f1 = match (precision, recall) {
                (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                (Some(_), Some(_)) => Some(0.0),
                _ => None,
            };
            ClassScores {
                id,
                reference_pixels,
                map_pixels,
                correct,
                precision,
                recall,
                f1,
            }
        })
        .collect();
    let overall_accuracy = if n == 0 {
        0.0
    } else {
        diagonal as f64 / n as f64
    };
    // κ = (p_o − p_e) / (1 − p_e) = (n·d − Σ r·c) / (n² − Σ r·c), exact up to the division.
    let n2 = u128::from(n) * u128::from(n);
    let numerator = i128::try_from(u128::from(n) * u128::from(diagonal)).unwrap_or(i128::MAX)
        - i128::try_from(chance).unwrap_or(i128::MAX);
    let denominator = n2.saturating_sub(chance);
    let kappa = (denominator > 0).then(|| numerator as f64 / denominator as f64);
    Agreement {
        overall_accuracy,
        kappa,
        per_class,
    }
}

/// The adjusted Rand index of the two labelings (scikit-learn's `adjusted_rand_score`, from
/// its pair confusion matrix, in integers): 1 for the same partition, about 0 for chance.
pub(crate) fn adjusted_rand_index(t: &Contingency) -> f64 {
    let n = i128::from(t.total() as i64);
    let square = |v: u64| i128::from(v as i64) * i128::from(v as i64);
    let sum_squares: i128 = t.counts.iter().flatten().map(|&v| square(v)).sum();
    let rows: i128 = t.row_sums().into_iter().map(square).sum();
    let cols: i128 = t.col_sums().into_iter().map(square).sum();
    // Pairs in the same class in both (tp), only in the map's (fp), only in the reference's
    // (fn), in neither (tn); each pair counted twice, as scikit-learn does.
    let tp = sum_squares - n;
    let fp = cols - sum_squares;
    let fn_ = rows - sum_squares;
    let tn = n * n - fp - fn_ - sum_squares;
    if fn_ == 0 && fp == 0 {
        return 1.0;
    }
    let numerator = 2 * (tp * tn - fn_ * fp);
    let denominator = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
    numerator as f64 / denominator as f64
}

/// Entropy (natural log) of the counts `c`, as scikit-learn's `entropy` of labels.
fn entropy(c: &[u64]) -> f64 {
    let total: u64 = c.iter().sum();
    if c.len() <= 1 || total == 0 {
        return 0.0;
    }
    let (t, lt) = (total as f64, (total as f64).ln());
    -c.iter()
        .filter(|&&v| v > 0)
        .map(|&v| (v as f64 / t) * ((v as f64).ln() - lt))
        .sum::<f64>()
}

/// The normalized mutual information of the two labelings, the mutual information over the
/// arithmetic mean of their entropies (scikit-learn's `normalized_mutual_info_score` with its
/// default `average_method="arithmetic"`): 1 for the same partition, 0 for independent ones.
pub(crate) fn normalized_mutual_information(t: &Contingency) -> f64 {
    let (rs, cs) = (t.row_sums(), t.col_sums());
    if rs.len() == cs.len() && rs.len() <= 1 {
        return 1.0;
    }
    let mi = mutual_information(t, &rs, &cs);
    if mi == 0.0 {
        return 0.0;
    }
    let normalizer = 0.5 * (entropy(&rs) + entropy(&cs));
    mi / normalizer.max(f64::EPSILON)
}

/// The mutual information (natural log) of the table, as scikit-learn's `mutual_info_score`.
fn mutual_information(t: &Contingency, rs: &[u64], cs: &[u64]) -> f64 {
    if rs.len() == 1 || cs.len() == 1 {
        return 0.0;
    }
    let n = t.total() as f64;
    let ln_n = n.ln();
    let mut sum = 0.0;
    for (i, row) in t.counts.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            if v == 0 {
                continue;
            }
            let p = v as f64 / n;
            let outer = rs[i] as f64 * cs[j] as f64;
            let term = p * ((v as f64).ln() - ln_n) + p * (-outer.ln() + ln_n + ln_n);
            sum += if term.abs() < f64::EPSILON { 0.0 } else { term };
        }
    }
    sum.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two labelings of ten pixels.
    fn table() -> Contingency {
        let reference = [0u16, 0, 0, 1, 1, 1, 2, 2, 2, 2];
        let map = [0u16, 0, 1, 1, 1, 2, 2, 2, 2, 0];
        Contingency::of(reference.into_iter().zip(map))
    }

    #[test]
    fn figures_match_scikit_learn_on_a_small_case() {
        // scikit-learn 1.2.1 on these arrays: accuracy_score 0.7, cohen_kappa_score
        // 0.5454545454545454, adjusted_rand_score 0.20454545454545456,
        // normalized_mutual_info_score 0.44270128334605013.
        let t = table();
        let a = agreement(&t);
        assert_eq!(a.overall_accuracy, 0.7);
        assert!((a.kappa.unwrap() - 0.545_454_545_454_545_4).abs() < 1e-15);
        assert!((adjusted_rand_index(&t) - 0.204_545_454_545_454_56).abs() < 1e-15);
        assert!((normalized_mutual_information(&t) - 0.442_701_283_346_050_13).abs() < 1e-12);
        let c2 = &a.per_class[2];
        assert_eq!((c2.correct, c2.reference_pixels, c2.map_pixels), (3, 4, 4));
        assert_eq!(
            (c2.precision, c2.recall, c2.f1),
            (Some(0.75), Some(0.75), Some(0.75))
        );
    }

    #[test]
    fn identical_partitions_score_one_whatever_their_ids() {
        let t = Contingency::of([(0u16, 5u16), (0, 5), (1, 7), (2, 9), (2, 9)]);
        assert_eq!(adjusted_rand_index(&t), 1.0);
        assert!((normalized_mutual_information(&t) - 1.0).abs() < 1e-15);
        assert_eq!(agreement(&t).overall_accuracy, 0.0);
        // One class in both: kappa is undefined, ARI and NMI are 1 by convention.
        let one = Contingency::of([(3u16, 3u16), (3, 3)]);
        assert_eq!(agreement(&one).kappa, None);
        assert_eq!(adjusted_rand_index(&one), 1.0);
        assert_eq!(normalized_mutual_information(&one), 1.0);
    }

    #[test]
    fn renaming_map_ids_merges_their_cells() {
        let t = table().relabelled(|c| if c == 2 { 1 } else { c });
        assert_eq!(t.cols, [0, 1]);
        assert_eq!(t.counts, [[2, 1], [0, 3], [1, 3]]);
    }
}
