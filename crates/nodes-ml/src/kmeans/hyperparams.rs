//! Parameters of `kmeans-fit`, as written and once validated.

use flow_core::{ParamError, ParamKind, ParamType};
use serde::{Deserialize, Serialize};

flow_core::param_enum! {
    /// How the initial centroids of each run are chosen.
    pub enum InitMethod {
        /// Greedy k-means++ (Arthur & Vassilvitskii, with scikit-learn's 2 + ln k local trials
        /// per centre): each new centre is the best of a few rows drawn with probability
        /// proportional to their squared distance to the centres so far.
        KMeansPlusPlus = "k-means++",
        /// k distinct rows drawn uniformly.
        Random = "random",
        /// k-means|| (Bahmani et al. 2012): 5 rounds of oversampling (l = 2k candidates expected
        /// per round), candidates weighted by the rows nearest to them, reduced to k by weighted
        /// k-means++. Unlike dask-ml's `oversampling_factor=0`, it never pads with random rows.
        KMeansParallel = "k-means||",
    }
}

/// `sample` as written: a row count (integer) or a fraction of the rows (float).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleParam {
    /// A number of rows.
    Count(i64),
    /// A fraction of the rows in (0, 1].
    Fraction(f64),
}

impl ParamKind for SampleParam {
    /// A number: an integer is a count, a float a fraction.
    fn param_type() -> ParamType {
        ParamType::Float
    }
}

/// A validated `sample`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// At most this many rows (all rows when there are fewer).
    Count(usize),
    /// This fraction of the rows, rounded, at least one.
    Fraction(f64),
}

impl Sample {
    /// The number of rows to fit on out of `n`.
    pub fn size(self, n: usize) -> usize {
        match self {
            Sample::Count(c) => c.min(n),
            Sample::Fraction(p) => ((p * n as f64).round() as usize).clamp(1, n.max(1)).min(n),
        }
    }
}

/// `k` as written: a number of clusters, or a word (`"auto"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KParam {
    /// A number of clusters.
    Count(i64),
    /// `"auto"`; any other word is refused by [`KMeansParams::validate`].
    Word(String),
    /// Anything else (a float, an array, ...), refused by [`KMeansParams::validate`].
    Other(toml::Value),
}

impl ParamKind for KParam {
    /// An integer or `"auto"`: the schema cannot say both, so any value passes it and
    /// [`KMeansParams::validate`] checks.
    fn param_type() -> ParamType {
        ParamType::Any
    }
}

flow_core::param_enum! {
    /// How `k = "auto"` compares the fits of different k.
    pub enum Criterion {
        /// Mean silhouette (Rousseeuw 1987) on a seeded sample of at most
        /// [`SILHOUETTE_SAMPLE`](super::SILHOUETTE_SAMPLE) rows, highest wins: how much closer a
        /// row is to its own cluster than to the nearest other one, in (-1, 1].
        Silhouette = "silhouette",
        /// Calinski-Harabasz (variance ratio) on every fitted row, highest wins: between-cluster
        /// over within-cluster dispersion, each per degree of freedom.
        CalinskiHarabasz = "calinski-harabasz",
        /// Davies-Bouldin on every fitted row, lowest wins: the mean over clusters of the worst
        /// ratio of summed spreads to centroid distance.
        DaviesBouldin = "davies-bouldin",
    }
}

impl Criterion {
    /// True when a higher value is better (silhouette, Calinski-Harabasz).
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Criterion::DaviesBouldin)
    }
}

/// The default `k_range` of `k = "auto"`.
pub const DEFAULT_K_RANGE: (usize, usize) = (2, 10);

/// The default `seed` of `kmeans-fit`, which `sample` shares so that the rows it keeps are the
/// ones `kmeans-fit` with `sample` fits on.
pub const DEFAULT_SEED: i64 = 0;

/// The default `criterion` of `k = "auto"`; see the param's doc and the README for why.
pub const DEFAULT_CRITERION: Criterion = Criterion::Silhouette;

/// How many clusters to fit, once validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KChoice {
    /// This many, 1..=65535.
    Fixed(usize),
    /// Every k from `from` to `to` (inclusive, 2 <= from <= to <= 65535), the best by
    /// `criterion` kept.
    Auto {
        /// The smallest k tried.
        from: usize,
        /// The largest k tried.
        to: usize,
        /// How fits are compared.
        criterion: Criterion,
    },
}

flow_core::params! {
    /// `kmeans-fit` parameters as written in the recipe.
    pub struct KMeansParams {
        /// number of clusters (an integer >= 1), or "auto": one fit per k of `k_range`, each as
        /// that integer k would be fitted (same seed), the best by `criterion` kept and the
        /// whole sweep recorded in the model (`info.sweep`)
        pub k: KParam,
        /// with k = "auto": the smallest and largest k tried, inclusive, such as [2, 10] (the
        /// default); ignored for an integer k
        pub k_range: Option<Vec<i64>>,
        /// with k = "auto": how the fits are compared: "silhouette" (the default; highest mean
        /// silhouette on a seeded sample of 5000 fitted rows: bounded in [-1, 1] and independent
        /// of the number of rows, so it reads the same on any scene), "calinski-harabasz"
        /// (highest variance ratio; the cheapest, from the clusters' means) or "davies-bouldin"
        /// (lowest). All three are recorded for every k; ignored for an integer k
        pub criterion: Option<Criterion>,
        /// initialization of each run
        pub init: InitMethod = InitMethod::KMeansPlusPlus,
        /// runs; the lowest inertia wins
        pub n_init: i64 = 10,
        /// maximum Lloyd iterations per run
        pub max_iter: i64 = 300,
        /// stop when the squared centre shift <= tol x mean feature variance
        pub tol: f64 = 1e-4,
        /// seed of every random choice (recorded in the model)
        pub seed: i64 = DEFAULT_SEED,
        /// fit on a deterministic subset: an integer row count, or a fraction in (0, 1] such as
        /// 0.1
        pub sample: Option<SampleParam>,
    }
}

/// `kmeans-fit` parameters once checked; made only by [`KMeansParams::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansValidParams {
    k: KChoice,
    init: InitMethod,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    sample: Option<Sample>,
}

impl KMeansValidParams {
    /// Number of clusters, 1..=65535 (class ids are u16 and 65535 is nodata), or the range
    /// `k = "auto"` tries.
    pub fn k(&self) -> KChoice {
        self.k
    }

    /// Initialization method.
    pub fn init(&self) -> InitMethod {
        self.init
    }

    /// Runs, >= 1.
    pub fn n_init(&self) -> usize {
        self.n_init
    }

    /// Iterations per run, >= 1.
    pub fn max_iter(&self) -> usize {
        self.max_iter
    }

    /// Relative tolerance, finite and >= 0: a run stops once the squared centre shift is at most
    /// `tol` x the mean per-feature variance of the rows (scikit-learn's criterion; linfa's
    /// absolute one depends on the data's units).
    pub fn tol(&self) -> f64 {
        self.tol
    }

    /// Seed of every random choice.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Optional subset: a count >= 1 or a fraction in (0, 1].
    pub fn sample(&self) -> Option<Sample> {
        self.sample
    }
}

/// The largest k: class ids are u16 and 65535 is nodata.
const MAX_K: usize = 65535;

/// A checked `k_range = [a, b]`.
fn k_range(a: i64, b: i64) -> Result<(usize, usize), ParamError> {
    let bad = |why: &str| {
        ParamError::new("k_range", format!("`k_range` [{a}, {b}] {why}"))
            .with_help("give [smallest, largest] with 2 <= smallest <= largest, such as [2, 10]")
    };
    let (Ok(from), Ok(to)) = (usize::try_from(a), usize::try_from(b)) else {
        return Err(bad("must hold two integers >= 2"));
    };
    if from < 2 {
        return Err(bad(
            "must start at 2 or more: no criterion compares a single cluster",
        ));
    }
    if from > to {
        return Err(bad("is empty: its first k is larger than its last"));
    }
    if to > MAX_K {
        return Err(bad(&format!("must end at most at {MAX_K}")));
    }
    Ok((from, to))
}

impl KMeansParams {
    /// Checks ranges.
    ///
    /// # Errors
    /// A [`ParamError`] naming the parameter out of range.
    pub fn validate(self) -> Result<KMeansValidParams, ParamError> {
        let positive = |v: i64, name: &str| -> Result<usize, ParamError> {
            usize::try_from(v)
                .ok()
                .filter(|&v| v >= 1)
                .ok_or_else(|| ParamError::new(name, format!("`{name}` must be >= 1, got {v}")))
        };
        let k = match self.k {
            KParam::Count(k) => {
                let k = positive(k, "k")?;
                if k > MAX_K {
                    return Err(ParamError::new(
                        "k",
                        format!("`k` must be at most {MAX_K}, got {k}"),
                    ));
                }
                KChoice::Fixed(k)
            }
            KParam::Word(w) if w.eq_ignore_ascii_case("auto") => {
                let (from, to) = match self.k_range.as_deref() {
                    None => DEFAULT_K_RANGE,
                    Some(&[a, b]) => k_range(a, b)?,
                    Some(other) => {
                        return Err(ParamError::new(
                            "k_range",
                            format!(
                                "`k_range` needs two integers [smallest, largest], got {} values",
                                other.len()
                            ),
                        ))
                    }
                };
                KChoice::Auto {
                    from,
                    to,
                    criterion: self.criterion.unwrap_or(DEFAULT_CRITERION),
                }
            }
            KParam::Word(w) => {
                return Err(ParamError::new(
                    "k",
                    format!("`k` must be an integer >= 1 or \"auto\", got \"{w}\""),
                ))
            }
            KParam::Other(v) => {
                return Err(ParamError::new(
                    "k",
                    format!(
                        "`k` must be an integer >= 1 or \"auto\", got {} {v}",
                        flow_core::schema::toml_type_name(&v)
                    ),
                ))
            }
        };
        let sample = match self.sample {
            None => None,
            Some(SampleParam::Count(c)) => Some(Sample::Count(
                usize::try_from(c).ok().filter(|&c| c >= 1).ok_or_else(|| {
                    ParamError::new(
                        "sample",
                        format!("`sample` as a count must be >= 1, got {c}"),
                    )
                })?,
            )),
            Some(SampleParam::Fraction(p)) if p > 0.0 && p <= 1.0 => Some(Sample::Fraction(p)),
            Some(SampleParam::Fraction(p)) => {
                return Err(ParamError::new(
                    "sample",
                    format!("`sample` as a fraction must be in (0, 1], got {p}"),
                ))
            }
        };
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(ParamError::new(
                "tol",
                format!("`tol` must be a finite number >= 0, got {}", self.tol),
            ));
        }
        let seed = u64::try_from(self.seed).map_err(|_| {
            ParamError::new("seed", format!("`seed` must be >= 0, got {}", self.seed))
        })?;
        Ok(KMeansValidParams {
            k,
            init: self.init,
            n_init: positive(self.n_init, "n_init")?,
            max_iter: positive(self.max_iter, "max_iter")?,
            tol: self.tol,
            seed,
            sample,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::DeclaredParams;

    fn parse(src: &str) -> Result<KMeansValidParams, ParamError> {
        KMeansParams::parse(&toml::from_str(src).unwrap())?.validate()
    }

    #[test]
    fn defaults_and_ranges() {
        let p = parse("k = 4").unwrap();
        assert_eq!(
            (
                p.k(),
                p.init(),
                p.n_init(),
                p.max_iter(),
                p.tol(),
                p.seed(),
                p.sample()
            ),
            (
                KChoice::Fixed(4),
                InitMethod::KMeansPlusPlus,
                10,
                300,
                1e-4,
                0,
                None
            )
        );
        assert_eq!(parse("k = 0").unwrap_err().param.as_deref(), Some("k"));
        assert_eq!(parse("k = -3").unwrap_err().param.as_deref(), Some("k"));
        assert_eq!(
            parse("k = 2\nn_init = 0").unwrap_err().param.as_deref(),
            Some("n_init")
        );
        assert_eq!(
            parse("k = 2\nseed = -1").unwrap_err().param.as_deref(),
            Some("seed")
        );
        assert_eq!(
            parse("k = 2\ntol = -1.0").unwrap_err().param.as_deref(),
            Some("tol")
        );
        assert_eq!(
            parse("k = 2\ninit = \"k-means||\"").unwrap().init(),
            InitMethod::KMeansParallel
        );
    }

    #[test]
    fn k_auto_with_its_range_and_criterion() {
        assert_eq!(
            parse("k = \"auto\"").unwrap().k(),
            KChoice::Auto {
                from: 2,
                to: 10,
                criterion: Criterion::Silhouette
            }
        );
        assert_eq!(
            parse("k = \"AUTO\"\nk_range = [3, 7]\ncriterion = \"davies-bouldin\"")
                .unwrap()
                .k(),
            KChoice::Auto {
                from: 3,
                to: 7,
                criterion: Criterion::DaviesBouldin
            }
        );
        // An integer k ignores the sweep's params, so that `--set k=6` works on an "auto" recipe.
        assert_eq!(
            parse("k = 6\nk_range = [3, 7]\ncriterion = \"silhouette\"")
                .unwrap()
                .k(),
            KChoice::Fixed(6)
        );
        for (bad, param) in [
            ("k = \"many\"", "k"),
            ("k = 4.5", "k"),
            ("k = [4]", "k"),
            ("k = \"auto\"\nk_range = [1, 5]", "k_range"),
            ("k = \"auto\"\nk_range = [6, 5]", "k_range"),
            ("k = \"auto\"\nk_range = [2, 5, 8]", "k_range"),
            ("k = \"auto\"\nk_range = [-2, 5]", "k_range"),
            ("k = \"auto\"\nk_range = [2, 70000]", "k_range"),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{bad}: {e:?}");
        }
        let e = parse("k = \"many\"").unwrap_err();
        assert!(e.message.contains("\"auto\""), "{}", e.message);
        let e = parse("k = \"auto\"\ncriterion = \"elbow\"").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("criterion"), "{e:?}");
    }

    #[test]
    fn sample_count_or_fraction() {
        assert_eq!(
            parse("k = 2\nsample = 1000").unwrap().sample(),
            Some(Sample::Count(1000))
        );
        assert_eq!(
            parse("k = 2\nsample = 0.25").unwrap().sample(),
            Some(Sample::Fraction(0.25))
        );
        assert_eq!(
            parse("k = 2\nsample = 1.5").unwrap_err().param.as_deref(),
            Some("sample")
        );
        assert_eq!(
            parse("k = 2\nsample = 0").unwrap_err().param.as_deref(),
            Some("sample")
        );
        assert_eq!(Sample::Fraction(0.25).size(10), 3);
        assert_eq!(Sample::Fraction(0.01).size(10), 1);
        assert_eq!(Sample::Count(50).size(10), 10);
    }
}
