//! Parameters of `classifier-fit`, as written and once validated.

use flow_core::ParamError;

flow_core::param_enum! {
    /// The model that `classifier-fit` fits.
    pub enum Method {
        /// Bagged decision trees (Breiman 2001): each tree on a bootstrap sample of the training
        /// rows, choosing each split among `features_per_split` features drawn at random; the
        /// classes are voted, ties to the lowest class id.
        RandomForest = "random-forest",
        /// One CART decision tree (Gini impurity) on all training rows and all features.
        DecisionTree = "decision-tree",
        /// The class whose training mean is nearest (squared Euclidean distance).
        NearestCentroid = "nearest-centroid",
    }
}

flow_core::params! {
    /// `classifier-fit` parameters as written in the recipe.
    pub struct ClassifierParams {
        /// the model: random-forest, decision-tree or nearest-centroid
        pub method: Method = Method::RandomForest,
        /// labelled pixels drawn per class (all of a class's pixels when it has fewer), before
        /// the held-out ones are set aside
        pub samples_per_class: i64 = 2000,
        /// the fraction of each class's drawn pixels held out of training to measure the
        /// model's accuracy, in [0, 1)
        pub holdout: f64 = 0.3,
        /// seed of every random choice: the pixels drawn, the held-out ones, the trees
        pub seed: i64 = 0,
        /// random-forest: number of trees
        pub trees: i64 = 100,
        /// decision trees: the deepest a leaf may be (no limit by default)
        pub max_depth: Option<i64>,
        /// random-forest: features considered at each split (default: the square root of the
        /// feature count, rounded, at least 1)
        pub features_per_split: Option<i64>,
        /// decision trees: the fewest training rows a leaf may hold
        pub min_samples_leaf: i64 = 1,
    }
}

/// `classifier-fit` parameters once checked; made only by [`ClassifierParams::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierValidParams {
    method: Method,
    samples_per_class: usize,
    holdout: f64,
    seed: u64,
    trees: usize,
    max_depth: Option<usize>,
    features_per_split: Option<usize>,
    min_samples_leaf: usize,
}

impl ClassifierValidParams {
    /// The model.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Pixels drawn per class, >= 1.
    pub fn samples_per_class(&self) -> usize {
        self.samples_per_class
    }

    /// The fraction held out, in [0, 1).
    pub fn holdout(&self) -> f64 {
        self.holdout
    }

    /// Seed of every random choice.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Trees of a random forest, >= 1 (one for a decision tree).
    pub fn trees(&self) -> usize {
        match self.method {
            Method::RandomForest => self.trees,
            Method::DecisionTree => 1,
            Method::NearestCentroid => 0,
        }
    }

    /// The deepest a leaf may be, >= 1; `None` for no limit.
    pub fn max_depth(&self) -> Option<usize> {
        self.max_depth
    }

    /// Features considered at each split among `features`: all of them for a decision tree,
    /// else `features_per_split` (at most `features`) or the rounded square root.
    pub fn features_per_split(&self, features: usize) -> usize {
        match self.method {
            Method::RandomForest => self
                .features_per_split
                .unwrap_or_else(|| (features as f64).sqrt().round() as usize)
                .clamp(1, features.max(1)),
            _ => features,
        }
    }

    /// The fewest training rows a leaf may hold, >= 1.
    pub fn min_samples_leaf(&self) -> usize {
        self.min_samples_leaf
    }
}

impl ClassifierParams {
    /// Checks ranges.
    ///
    /// # Errors
    /// A [`ParamError`] naming the parameter out of range.
    pub fn validate(self) -> Result<ClassifierValidParams, ParamError> {
        let positive = |v: i64, name: &str| -> Result<usize, ParamError> {
            usize::try_from(v)
                .ok()
                .filter(|&v| v >= 1)
                .ok_or_else(|| ParamError::new(name, format!("`{name}` must be >= 1, got {v}")))
        };
        if !(self.holdout >= 0.0 && self.holdout < 1.0) {
            return Err(ParamError::new(
                "holdout",
                format!("`holdout` must be in [0, 1), got {}", self.holdout),
            ));
        }
        let seed = u64::try_from(self.seed).map_err(|_| {
            ParamError::new("seed", format!("`seed` must be >= 0, got {}", self.seed))
        })?;
        Ok(ClassifierValidParams {
            method: self.method,
            samples_per_class: positive(self.samples_per_class, "samples_per_class")?,
            holdout: self.holdout,
            seed,
            trees: positive(self.trees, "trees")?,
            max_depth: self
                .max_depth
                .map(|d| positive(d, "max_depth"))
                .transpose()?,
            features_per_split: self
                .features_per_split
                .map(|f| positive(f, "features_per_split"))
                .transpose()?,
            min_samples_leaf: positive(self.min_samples_leaf, "min_samples_leaf")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::DeclaredParams;

    fn parse(src: &str) -> Result<ClassifierValidParams, ParamError> {
        ClassifierParams::parse(&toml::from_str(src).unwrap())?.validate()
    }

    #[test]
    fn defaults_and_ranges() {
        let p = parse("").unwrap();
        assert_eq!(
            (
                p.method(),
                p.samples_per_class(),
                p.holdout(),
                p.seed(),
                p.trees(),
                p.max_depth(),
                p.min_samples_leaf()
            ),
            (Method::RandomForest, 2000, 0.3, 0, 100, None, 1)
        );
        assert_eq!(p.features_per_split(12), 3);
        assert_eq!(p.features_per_split(14), 4);
        assert_eq!(p.features_per_split(1), 1);
        let p = parse("features_per_split = 20").unwrap();
        assert_eq!(
            p.features_per_split(12),
            12,
            "at most the features there are"
        );
        let p = parse("method = \"decision-tree\"\nfeatures_per_split = 2").unwrap();
        assert_eq!((p.trees(), p.features_per_split(12)), (1, 12));
        for (src, param) in [
            ("holdout = 1.0", "holdout"),
            ("holdout = -0.1", "holdout"),
            ("holdout = nan", "holdout"),
            ("seed = -1", "seed"),
            ("trees = 0", "trees"),
            ("max_depth = 0", "max_depth"),
            ("features_per_split = -2", "features_per_split"),
            ("samples_per_class = 0", "samples_per_class"),
            ("min_samples_leaf = 0", "min_samples_leaf"),
        ] {
            assert_eq!(
                parse(src).unwrap_err().param.as_deref(),
                Some(param),
                "{src}"
            );
        }
        assert_eq!(
            parse("method = \"nearest-centroid\"").unwrap().method(),
            Method::NearestCentroid
        );
    }
}
