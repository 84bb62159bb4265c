//! Parameters of `add-index`.

use flow_core::{schema::suggest, ParamError};

use super::expr::BandExpr;
use super::formulas::{SpectralIndex, ALL};

flow_core::params! {
    /// `add-index` parameters as written in the recipe.
    pub struct AddIndexParams {
        /// named indices, case-insensitive: NDVI, GNDVI, NDWI, MNDWI, NDBI, NDMI, NBR, SAVI, EVI
        pub indices: Option<Vec<String>>,
        /// band math: NAME = "expression" over band names (B08) or common names (nir), e.g.
        /// { RATIO = "nir / red" }
        pub expr: Option<toml::Table>,
        /// soil brightness factor L of SAVI
        pub savi_l: f64 = 0.5,
    }
}

/// One band to append.
#[derive(Debug, Clone)]
pub enum NewBand {
    /// A named index.
    Index(SpectralIndex),
    /// A band-math expression.
    Expr(BandExpr),
}

impl NewBand {
    /// The appended band's name.
    pub fn name(&self) -> &str {
        match self {
            NewBand::Index(i) => i.name(),
            NewBand::Expr(e) => &e.name,
        }
    }
}

/// `add-index` parameters once checked: the bands to append, in order (indices, then the
/// expressions in the order of the table). Made only by [`AddIndexParams::validate`].
#[derive(Debug, Clone)]
pub struct AddIndexValidParams {
    bands: Vec<NewBand>,
    savi_l: f64,
}

impl AddIndexValidParams {
    /// The bands to append (at least one, names distinct).
    pub fn bands(&self) -> &[NewBand] {
        &self.bands
    }

    /// SAVI's L, finite and `>= 0`.
    pub fn savi_l(&self) -> f64 {
        self.savi_l
    }
}

impl AddIndexParams {
    /// Checks names and parses expressions.
    ///
    /// # Errors
    /// A [`ParamError`] on `indices` (unknown or repeated name), `expr` (not a string, does not
    /// parse, name clash) or `savi_l` (negative or not finite), or a general one when neither
    /// `indices` nor `expr` is given.
    pub fn validate(self) -> Result<AddIndexValidParams, ParamError> {
        let mut bands: Vec<NewBand> = Vec::new();
        let known = || ALL.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ");
        for name in self.indices.iter().flatten() {
            let Some(index) = SpectralIndex::parse(name) else {
                let upper = name.to_ascii_uppercase();
                let mut e = ParamError::new(
                    "indices",
                    format!("unknown index `{name}`; known: {}", known()),
                );
                if let Some(s) = suggest(&upper, ALL.iter().map(|i| i.name())) {
                    e = e.with_help(format!("did you mean `{s}`?"));
                }
                return Err(e);
            };
            if bands.iter().any(|b| b.name() == index.name()) {
                return Err(ParamError::new(
                    "indices",
                    format!("index `{}` is listed twice", index.name()),
                ));
            }
            bands.push(NewBand::Index(index));
        }
        for (name, value) in self.expr.iter().flatten() {
            let Some(source) = value.as_str() else {
                return Err(ParamError::new(
                    "expr",
                    format!("`expr.{name}` must be a string expression"),
                ));
            };
            if bands.iter().any(|b| b.name().eq_ignore_ascii_case(name)) {
                return Err(ParamError::new(
                    "expr",
                    format!("`expr.{name}` clashes with index `{name}`"),
                ));
            }
            let e = BandExpr::parse(name, source).map_err(|m| {
                ParamError::new("expr", format!("expression `{name}` = \"{source}\": {m}"))
            })?;
            bands.push(NewBand::Expr(e));
        }
        if bands.is_empty() {
            return Err(
                ParamError::general("add-index needs `indices` or `expr` (or both)").with_help(
                    format!("e.g. indices = [\"NDVI\"]; known indices: {}", known()),
                ),
            );
        }
        if !(self.savi_l.is_finite() && self.savi_l >= 0.0) {
            return Err(ParamError::new(
                "savi_l",
                "`savi_l` must be a finite number >= 0",
            ));
        }
        Ok(AddIndexValidParams {
            bands,
            savi_l: self.savi_l,
        })
    }
}
