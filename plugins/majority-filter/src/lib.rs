//! A flow plugin with one node kind, `majority-filter`: a nodata-aware majority (mode) filter
//! that removes speckle (isolated pixels) from a class map, such as K-Means classes after
//! `reshape`.
//!
//! It is the worked example of docs/plugins.md: it depends on `flow-plugin` only, implements
//! `PluginKind` and `PluginNode` without any `unsafe`, stops when the run is cancelled, and
//! exports them with `export_plugin!`.

use flow_plugin::prelude::*;

pub mod filter;

/// The largest window accepted.
pub const MAX_SIZE: i64 = 51;

/// The `majority-filter` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct MajorityFilterKind;

impl PluginKind for MajorityFilterKind {
    fn name(&self) -> &str {
        "majority-filter"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Majority (mode) filter of a class map: each classified pixel takes the most frequent class \
         of the size x size window around it, which removes speckle. Nodata pixels stay nodata and \
         do not vote; ties keep the centre's class (else the smallest id). Grid and classes are \
         unchanged."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required(
                "input",
                ValueType::Labels,
                "the class map to smooth (e.g. reshape's output)",
            )],
            output: ValueType::Labels,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::with_default(
            "size",
            ParamType::Integer,
            3,
            "window width and height in pixels: odd, 3 to 51",
        )]
    }

    fn build(&self, params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
        let size = params.get("size").and_then(|v| v.as_integer()).unwrap_or(3);
        if !(3..=MAX_SIZE).contains(&size) || size % 2 == 0 {
            return Err(ParamError::new(
                "size",
                format!("must be an odd integer from 3 to {MAX_SIZE}, got {size}"),
            )
            .with_help("the window is centred on each pixel, so its width is odd: 3, 5, 7, ..."));
        }
        Ok(Box::new(MajorityFilter {
            size: size as usize,
        }))
    }
}

/// A built `majority-filter` node: the valid params.
#[derive(Debug, Clone, Copy)]
pub struct MajorityFilter {
    /// Window width and height, odd, 3 to [`MAX_SIZE`].
    pub size: usize,
}

impl PluginNode for MajorityFilter {
    fn run(&self, ctx: &PluginContext, inputs: &PluginInputs<'_>) -> Result<Value, NodeError> {
        let labels = inputs.labels("input")?;
        let stop = || ctx.is_cancelled();
        let data = filter::majority(
            labels.data.view(),
            labels.nodata,
            self.size,
            ctx.threads,
            &stop,
        )
        .ok_or(NodeError::Cancelled)?;
        let changed = data
            .iter()
            .zip(labels.data.iter())
            .filter(|(a, b)| a != b)
            .count();
        if changed == 0 {
            ctx.warn("majority-filter changed no pixel");
        }
        Ok(Value::Labels(Labels {
            data,
            nodata: labels.nodata,
            classes: labels.classes.clone(),
            grid: labels.grid.clone(),
        }))
    }
}

flow_plugin::export_plugin! {
    name: "majority-filter",
    version: env!("CARGO_PKG_VERSION"),
    kinds: [MajorityFilterKind],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(size: i64) -> Params {
        let mut p = Params::new();
        p.insert("size".into(), toml::Value::Integer(size));
        p
    }

    #[test]
    fn size_must_be_odd_and_in_range() {
        for bad in [0, 1, 2, 4, 53, -3] {
            let e = MajorityFilterKind.build(&params(bad)).err().unwrap();
            assert_eq!(e.param.as_deref(), Some("size"), "{bad}");
        }
        for good in [3, 5, 51] {
            assert!(MajorityFilterKind.build(&params(good)).is_ok());
        }
    }

    fn ctx() -> PluginContext {
        PluginContext::new("smooth", "/tmp".into(), "/tmp".into(), "/tmp".into())
    }

    #[test]
    fn the_node_filters_views_and_stops_when_cancelled() {
        let labels = Value::Labels(Labels {
            data: ndarray::array![[1, 1, 1], [1, 2, 1], [1, 1, 1u16]],
            nodata: 65535,
            classes: vec![],
            grid: Grid::north_up("EPSG:32618", 0.0, 30.0, 10.0, 3, 3),
        });
        let inputs = PluginInputs::new([("input".to_string(), ValueView::of(&labels).unwrap())]);
        let node = MajorityFilterKind.build(&params(3)).unwrap();
        let Value::Labels(out) = node.run(&ctx(), &inputs).unwrap() else {
            panic!("a class map")
        };
        assert!(out.data.iter().all(|&v| v == 1));

        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cancelled = ctx().with_cancel_flag(flag);
        assert!(matches!(
            node.run(&cancelled, &inputs),
            Err(NodeError::Cancelled)
        ));
    }
}
