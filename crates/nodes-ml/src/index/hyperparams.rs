//! Parameters of `add-index`.

use flow_core::{schema::suggest, ParamError, ParamSpec, ParamType};
use serde::Deserialize;

use super::expr::BandExpr;
use super::formulas::{SpectralIndex, ALL};

/// `add-index` parameters as written in the recipe.
#[derive(Debug, Clone, Deserialize)]
pub struct AddIndexParams {
    /// Named indices (`["NDVI", "ndwi"]`).
    #[serde(default)]
    pub indices: Vec<String>,
    /// Output band name -> expression.
    #[serde(default)]
    pub expr: toml::Table,
    /// The soil factor L of SAVI.
    #[serde(default = "default_savi_l")]
    pub savi_l: f64,
}

fn default_savi_l() -> f64 {
    0.5
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
/// expressions in the order of the table).
#[derive(Debug, Clone)]
pub struct AddIndexValidParams {
    /// The bands to append.
    pub bands: Vec<NewBand>,
    /// SAVI's L.
    pub savi_l: f64,
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
        for name in &self.indices {
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
        for (name, value) in &self.expr {
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

/// The schema of `add-index`.
pub fn schema() -> Vec<ParamSpec> {
    vec![
        ParamSpec::optional(
            "indices",
            ParamType::array(ParamType::String),
            "named indices, case-insensitive: NDVI, GNDVI, NDWI, MNDWI, NDBI, NDMI, NBR, SAVI, EVI",
        ),
        ParamSpec::optional(
            "expr",
            ParamType::Table,
            "band math: NAME = \"expression\" over band names (B08) or common names (nir), e.g. { RATIO = \"nir / red\" }",
        ),
        ParamSpec::with_default("savi_l", ParamType::Float, 0.5, "soil brightness factor L of SAVI"),
    ]
}
