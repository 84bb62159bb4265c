//! The crate's error type and its mapping onto [`flow_core::NodeError`].

use flow_core::NodeError;

/// Why a machine-learning node could not process its input.
///
/// Every variant except [`MlError::Cancelled`] is a problem of the data (exit code 3 through
/// [`NodeError::InvalidData`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MlError {
    /// The input has no usable row or pixel.
    #[error("no valid pixels: {0}")]
    NoValidRows(String),
    /// More clusters were asked for than there are rows to fit.
    #[error("k = {k} but only {rows} valid pixels{context}; lower k or check the mask upstream")]
    TooFewRows {
        /// The requested number of clusters.
        k: usize,
        /// The rows available for the fit.
        rows: usize,
        /// Extra context, such as " in the sample of 5".
        context: String,
    },
    /// An index or expression needs a band the raster does not have.
    #[error(
        "{what} needs band `{band}`, which the raster does not have (available bands: {available})"
    )]
    MissingBand {
        /// The index or expression (`NDVI`, `expr.ratio`).
        what: String,
        /// The band looked for.
        band: String,
        /// The raster's bands, for the message.
        available: String,
    },
    /// A band-math expression failed while being evaluated.
    #[error("expression `{name}`: {message}")]
    Expr {
        /// The expression's output band name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A matrix and a model disagree on the features: their number or their names.
    #[error(
        "the model was fitted on {} features [{}] but the matrix has {} [{}]",
        model.len(),
        model.join(", "),
        matrix.len(),
        matrix.join(", ")
    )]
    FeatureMismatch {
        /// The model's feature names.
        model: Vec<String>,
        /// The matrix's feature names.
        matrix: Vec<String>,
    },
    /// A matrix to gather does not agree with the first one: its features or their scaling.
    #[error("gather: input `{port}` {problem}")]
    Gather {
        /// The input's port.
        port: String,
        /// How it differs, naming both.
        problem: String,
    },
    /// An array has an unexpected shape or content.
    #[error("{0}")]
    Shape(String),
    /// A band would be appended under a name the raster already uses.
    #[error("band `{0}` already exists in the raster; rename the index or expression")]
    DuplicateBand(String),
    /// A time index beyond the raster's time steps.
    #[error("time index {index} is out of range: the raster has {times} time step(s)")]
    TimeOutOfRange {
        /// The requested index.
        index: usize,
        /// The raster's number of time steps.
        times: usize,
    },
    /// A choice of time steps by date that selects none of the raster's
    /// ([`flow_core::time::DateSelection::select_some`]: the node, the selection, the dates
    /// available).
    #[error("{0}")]
    NoTimeStep(String),
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl From<MlError> for NodeError {
    fn from(e: MlError) -> Self {
        match e {
            MlError::Cancelled => NodeError::Cancelled,
            other => NodeError::InvalidData(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_invalid_data_with_exit_code_3() {
        let e: NodeError = MlError::TooFewRows {
            k: 8,
            rows: 5,
            context: String::new(),
        }
        .into();
        assert_eq!(e.exit_code().code(), 3);
        assert!(
            e.to_string().contains("k = 8 but only 5 valid pixels"),
            "{e}"
        );
        assert!(matches!(
            NodeError::from(MlError::Cancelled),
            NodeError::Cancelled
        ));
    }
}
