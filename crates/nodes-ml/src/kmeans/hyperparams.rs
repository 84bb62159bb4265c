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

flow_core::params! {
    /// `kmeans-fit` parameters as written in the recipe.
    pub struct KMeansParams {
        /// number of clusters (>= 1)
        pub k: i64,
        /// initialization of each run
        pub init: InitMethod = InitMethod::KMeansPlusPlus,
        /// runs; the lowest inertia wins
        pub n_init: i64 = 10,
        /// maximum Lloyd iterations per run
        pub max_iter: i64 = 300,
        /// stop when the squared centre shift <= tol x mean feature variance
        pub tol: f64 = 1e-4,
        /// seed of every random choice (recorded in the model)
        pub seed: i64 = 0,
        /// fit on a deterministic subset: an integer row count, or a fraction in (0, 1] such as
        /// 0.1
        pub sample: Option<SampleParam>,
    }
}

/// `kmeans-fit` parameters once checked; made only by [`KMeansParams::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansValidParams {
    k: usize,
    init: InitMethod,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    sample: Option<Sample>,
}

impl KMeansValidParams {
    /// Number of clusters, 1..=65535 (class ids are u16 and 65535 is nodata).
    pub fn k(&self) -> usize {
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
        let k = positive(self.k, "k")?;
        if k > 65535 {
            return Err(ParamError::new(
                "k",
                format!("`k` must be at most 65535, got {k}"),
            ));
        }
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
            (4, InitMethod::KMeansPlusPlus, 10, 300, 1e-4, 0, None)
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
