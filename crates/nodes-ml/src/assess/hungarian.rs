//! The optimal one-to-one matching of a map's clusters to the reference's classes: the
//! Hungarian (Kuhn–Munkres) algorithm with potentials, O(n² m), on the contingency table.
//!
//! Written here rather than taken from a crate: it is forty lines on integer counts (exact, no
//! float tolerance), and the maintained crate that has it (`pathfinding`) would bring a dozen
//! packages for this one function.

/// The pairs `(row, column)` of a one-to-one matching of rows to columns of `weights` (a
/// rectangular table, rows of equal length) whose weights add up to the most; every row is
/// matched when there are at most as many rows as columns, else every column. Ties go to the
/// first optimum the algorithm meets, the same on every run. Pairs are in row order.
pub(crate) fn max_weight_matching(weights: &[Vec<u64>]) -> Vec<(usize, usize)> {
    let rows = weights.len();
    let cols = weights.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Costs to minimize: the negated weights, with the smaller side as rows.
    let cost = |r: usize, c: usize| -> i128 {
        let w = if rows <= cols {
            weights[r][c]
        } else {
            weights[c][r]
        };
        -i128::from(w)
    };
    let (n, m) = if rows <= cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let assigned = min_cost_assignment(n, m, cost);
    let mut pairs: Vec<(usize, usize)> = assigned
        .into_iter()
        .enumerate()
        .map(|(i, j)| if rows <= cols { (i, j) } else { (j, i) })
        .collect();
    pairs.sort_unstable();
    pairs
}

/// The column of each of `n` rows (n <= m) of the cheapest assignment under `cost`.
fn min_cost_assignment(n: usize, m: usize, cost: impl Fn(usize, usize) -> i128) -> Vec<usize> {
    const INF: i128 = i128::MAX / 4;
    // 1-based, as the classic formulation: column 0 is a sentinel.
    let mut u = vec![0i128; n + 1];
    let mut v = vec![0i128; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![INF; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = INF;
            let mut j1 = 0;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut columns = vec![0usize; n];
    for j in 1..=m {
        if p[j] != 0 {
            columns[p[j] - 1] = j - 1;
        }
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best total weight over every one-to-one matching, by trying them all.
    fn brute_force(w: &[Vec<u64>]) -> u64 {
        fn go(w: &[Vec<u64>], r: usize, used: &mut Vec<bool>) -> u64 {
            if r == w.len() {
                return 0;
            }
            let skip = if w.len() > used.len() {
                go(w, r + 1, used)
            } else {
                0
            };
            let mut best = skip;
            for c in 0..used.len() {
                if !used[c] {
                    used[c] = true;
                    best = best.max(w[r][c] + go(w, r + 1, used));
                    used[c] = false;
                }
            }
            best
        }
        go(w, 0, &mut vec![false; w[0].len()])
    }

    #[test]
    fn matchings_are_optimal_on_square_and_rectangular_tables() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % 50
        };
        for (rows, cols) in [
            (1, 1),
            (3, 3),
            (4, 4),
            (5, 3),
            (3, 6),
            (6, 6),
            (2, 5),
            (6, 2),
        ] {
            for _ in 0..30 {
                let w: Vec<Vec<u64>> = (0..rows)
                    .map(|_| (0..cols).map(|_| next()).collect())
                    .collect();
                let pairs = max_weight_matching(&w);
                assert_eq!(pairs.len(), rows.min(cols));
                let mut seen_r: Vec<usize> = pairs.iter().map(|p| p.0).collect();
                let mut seen_c: Vec<usize> = pairs.iter().map(|p| p.1).collect();
                seen_r.dedup();
                seen_c.sort_unstable();
                seen_c.dedup();
                assert_eq!((seen_r.len(), seen_c.len()), (pairs.len(), pairs.len()));
                let total: u64 = pairs.iter().map(|&(r, c)| w[r][c]).sum();
                assert_eq!(total, brute_force(&w), "{w:?}");
            }
        }
        assert!(max_weight_matching(&[]).is_empty());
    }
}
