//! Clipping a cube to the recipe's area of interest: pixels whose centre lies outside the polygon
//! become NaN, as rasterio's `geometry_mask(all_touched=False)` and rioxarray's `clip` do.
//!
//! The polygon's vertices are reprojected from longitude / latitude to the grid's CRS (vertices
//! only, as GDAL does when it rasterizes a geometry in another CRS) and burned with
//! [`flow_core::polygon::Polygons::inside`].

use flow_core::polygon::Polygons;
use flow_core::Grid;
use gdal::spatial_ref::CoordTransform;
use ndarray::{Array4, Axis};

use crate::error::{RasterError, Result};
use crate::grid::srs;

/// The area in the CRS `epsg`, from longitude / latitude.
pub(crate) fn reproject(aoi: &Polygons, epsg: u32) -> Result<Polygons> {
    if epsg == 4326 {
        return Ok(aoi.clone());
    }
    let t = CoordTransform::new(&srs(4326)?, &srs(epsg)?)
        .map_err(|e| RasterError::InvalidData(format!("EPSG:4326 -> EPSG:{epsg}: {e}")))?;
    aoi.map_vertices(|ring| {
        let mut xs: Vec<f64> = ring.iter().map(|p| p[0]).collect();
        let mut ys: Vec<f64> = ring.iter().map(|p| p[1]).collect();
        let mut zs = vec![0.0; ring.len()];
        t.transform_coords(&mut xs, &mut ys, &mut zs).map_err(|e| {
            RasterError::InvalidData(format!(
                "cannot reproject the area of interest to EPSG:{epsg}: {e}"
            ))
        })?;
        for (p, (x, y)) in ring.iter_mut().zip(xs.into_iter().zip(ys)) {
            *p = [x, y];
        }
        Ok(())
    })
}

/// Sets every pixel of `data` (time x band x y x x on `grid`) outside `area` (in the grid's CRS)
/// to NaN; returns how many pixels of one plane are outside.
pub(crate) fn outside_to_nan(area: &Polygons, grid: &Grid, data: &mut Array4<f32>) -> usize {
    let inside = area.inside(grid);
    let outside = inside.iter().filter(|&&i| !i).count();
    if outside == 0 {
        return 0;
    }
    for mut time in data.axis_iter_mut(Axis(0)) {
        for mut plane in time.axis_iter_mut(Axis(0)) {
            for (v, &keep) in plane.iter_mut().zip(&inside) {
                if !keep {
                    *v = f32::NAN;
                }
            }
        }
    }
    outside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_utm_grid_is_clipped_to_a_lon_lat_polygon() {
        // A 1 km square in UTM 18N around Timberlea and a polygon covering its western half.
        let area = Polygons {
            geometries: vec![vec![vec![
                [-73.92, 45.42],
                [-73.9, 45.42],
                [-73.9, 45.45],
                [-73.92, 45.45],
                [-73.92, 45.42],
            ]]],
        };
        let utm = reproject(&area, 32618).unwrap();
        let [w, _, e, _] = utm.bbox();
        assert!(w > 500_000.0 && e - w > 1000.0 && e - w < 2000.0, "{w} {e}");
        let grid = Grid::north_up("EPSG:32618", e - 1000.0, 5_032_000.0, 100.0, 20, 1);
        let mut data = Array4::from_elem((2, 1, 1, 20), 1.0f32);
        let outside = outside_to_nan(&utm, &grid, &mut data);
        // The grid starts 1000 m west of the polygon's east edge: 10 columns in, 10 out.
        assert_eq!(outside, 10);
        assert!(data.iter().skip(10).take(10).all(|v| v.is_nan()));
        assert!(data.iter().skip(20).take(10).all(|v| *v == 1.0));
    }
}
