//! Target grids: reprojecting bounds and snapping them to the resolution, like stackstac.

use flow_core::Grid;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};

use crate::error::{RasterError, Result};

/// Bounds `[min_x, min_y, max_x, max_y]`.
pub(crate) type Bounds = [f64; 4];

/// A spatial reference from an EPSG code, with x = easting / longitude whatever the authority
/// says about axis order.
pub(crate) fn srs(epsg: u32) -> Result<SpatialRef> {
    let mut s = SpatialRef::from_epsg(epsg)
        .map_err(|e| RasterError::InvalidData(format!("EPSG:{epsg}: {e}")))?;
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(s)
}

/// Reprojects `bounds` from `from` to `to` with densified edges (21 points per edge, like
/// pyproj's `transform_bounds` that stackstac uses), giving the bounding box of the result.
pub(crate) fn transform_bounds(bounds: Bounds, from: u32, to: u32) -> Result<Bounds> {
    if from == to {
        return Ok(bounds);
    }
    let t = CoordTransform::new(&srs(from)?, &srs(to)?)
        .map_err(|e| RasterError::InvalidData(format!("EPSG:{from} -> EPSG:{to}: {e}")))?;
    t.transform_bounds(&bounds, 21).map_err(|e| {
        RasterError::InvalidData(format!(
            "cannot reproject bounds {bounds:?} from EPSG:{from} to EPSG:{to}: {e}"
        ))
    })
}

/// Snaps bounds outward to multiples of `res` counted from `origin` (`(0, 0)`, the CRS origin,
/// is what stackstac does).
pub(crate) fn snap_outward(b: Bounds, res: f64, origin: (f64, f64)) -> Bounds {
    let (ox, oy) = origin;
    [
        ox + ((b[0] - ox) / res).floor() * res,
        oy + ((b[1] - oy) / res).floor() * res,
        ox + ((b[2] - ox) / res).ceil() * res,
        oy + ((b[3] - oy) / res).ceil() * res,
    ]
}

/// The most columns or rows of a grid: GDAL sizes rasters with C ints.
const MAX_SIDE: f64 = i32::MAX as f64;

/// The north-up grid of `res`-metre pixels whose upper-left corner is the upper-left of `b`,
/// covering `b` (a partial last pixel counts as one). Whether its pixels fit in memory is for
/// the node that allocates them to say.
pub(crate) fn grid_of(crs: String, b: Bounds, res: f64) -> Result<Grid> {
    let cols = ((b[2] - b[0]) / res - 1e-9).ceil();
    let rows = ((b[3] - b[1]) / res - 1e-9).ceil();
    if !(cols >= 1.0 && rows >= 1.0 && cols <= MAX_SIDE && rows <= MAX_SIDE) {
        return Err(RasterError::InvalidData(format!(
            "bounds {b:?} at resolution {res} give an unusable grid of {cols} x {rows} pixels"
        )));
    }
    Ok(Grid::north_up(
        crs,
        b[0],
        b[3],
        res,
        cols as usize,
        rows as usize,
    ))
}

/// The union of several bounds.
pub(crate) fn union(all: impl IntoIterator<Item = Bounds>) -> Option<Bounds> {
    all.into_iter().reduce(|a, b| {
        [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notebook_aoi_matches_stackstac() {
        let b = transform_bounds(
            [-73.9120245, 45.4263471, -73.883357, 45.4445361],
            4326,
            32618,
        )
        .unwrap();
        let g = grid_of("EPSG:32618".into(), snap_outward(b, 10.0, (0.0, 0.0)), 10.0).unwrap();
        assert_eq!((g.height, g.width), (207, 228));
        assert_eq!(g.transform, [585080.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]);
    }

    #[test]
    fn snapping_from_a_native_origin() {
        // stackstac's example: a 30 m scene with origin (717345, -2776995) snaps to (717330, -2776980).
        let s = snap_outward(
            [717345.0, -2777595.0, 717945.0, -2776995.0],
            30.0,
            (0.0, 0.0),
        );
        assert_eq!(s, [717330.0, -2777610.0, 717960.0, -2776980.0]);
        let keep = snap_outward(
            [717345.0, -2777595.0, 717945.0, -2776995.0],
            30.0,
            (717345.0, -2776995.0),
        );
        assert_eq!(keep, [717345.0, -2777595.0, 717945.0, -2776995.0]);
    }
}
