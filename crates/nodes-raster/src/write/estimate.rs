//! What `write` needs in memory ([`flow_core::estimate`]): a quicklook holds its thinned inputs
//! and the picture, a sweep's chart its picture; a GeoTIFF / COG of a whole value holds a copy for GDAL, of a windowed one a
//! few windows; a model's JSON gathers its class means in one pass over windowed spectra.

use flow_core::estimate::{Estimate, Known, Pixels, Shape};

use super::{Format, QUICKLOOK_MAX};

/// The estimate of writing the inputs `known` as `format`.
pub(super) fn estimate(format: Format, known: &Known) -> Estimate {
    let arrays: Vec<_> = known
        .shapes
        .iter()
        .filter_map(|(_, s)| s.pixels())
        .collect();
    let est = Estimate::of(Shape::Small);
    match format {
        Format::Png => {
            let longest = arrays
                .iter()
                .map(|p| p.grid.width.max(p.grid.height))
                .max()
                .unwrap_or(0);
            let step = longest.div_ceil(QUICKLOOK_MAX).max(1);
            let thinned: u64 = arrays
                .iter()
                .map(|p| {
                    let px = p.grid.width.div_ceil(step) * p.grid.height.div_ceil(step);
                    px as u64 * p.pixel_bytes()
                })
                .sum();
            // The picture: the class map and the RGB panel side by side, RGBA.
            let side = longest.div_ceil(step) as u64;
            let mut est = est.working(thinned + 2 * side * side * 4);
            // Windowed inputs are computed on a grid `step` times coarser, one after the other.
            for p in arrays.iter().filter(|p| p.window.is_some()) {
                let coarse = Pixels {
                    grid: p.grid.coarsened(step),
                    ..(*p).clone()
                };
                est.windows += coarse.windows();
                est.read_bytes += p.pass_read / (step * step) as u64;
            }
            est.working_bytes += known.pass_bytes();
            // A model's sweep is drawn as a chart of a fixed size.
            if matches!(known.shape("input"), Shape::Small) {
                est.working_bytes += super::sweep::CHART_BYTES;
            }
            est
        }
        Format::GTiff | Format::Cog => {
            let copy: u64 = arrays
                .iter()
                .map(|p| match p.window {
                    Some(_) => p.window_bytes() * known.threads as u64,
                    None => p.bytes(),
                })
                .sum();
            est.working(copy).one_pass(known)
        }
        Format::Json => est.one_pass(known),
    }
}
