//! True ground areas of pixels, whatever the grid's CRS says a pixel covers on the map.
//!
//! A pixel of a geographic grid (degrees) or a Web Mercator grid covers very different ground
//! areas at different latitudes, and a UTM pixel is scaled by the projection's scale factor. The
//! areas here are measured on the WGS 84 ellipsoid: for geographic and Web Mercator grids exactly
//! (the area of the latitude-longitude quadrangle each row spans), for UTM grids with the
//! transverse Mercator scale factor at each column. Other CRSs are not measured (`None`), so a
//! report shows no number rather than a wrong one.

use crate::grid::Grid;

/// WGS 84 semi-major axis (m).
const A: f64 = 6_378_137.0;
/// WGS 84 flattening.
const F: f64 = 1.0 / 298.257_223_563;

/// How a CRS maps to ground.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Model {
    /// Longitude / latitude in degrees.
    Geographic,
    /// EPSG:3857 (spherical Mercator coordinates of WGS 84 positions).
    WebMercator,
    /// A UTM zone (transverse Mercator, k0 = 0.9996, false easting 500 km).
    Utm,
}

fn model(crs: &str) -> Option<Model> {
    let upper = crs.trim().to_ascii_uppercase();
    if let Some(code) = upper
        .strip_prefix("EPSG:")
        .and_then(|c| c.parse::<u32>().ok())
    {
        return match code {
            4326 | 4269 | 4258 | 4283 | 4617 | 4167 => Some(Model::Geographic),
            3857 | 900913 | 3785 | 102100 => Some(Model::WebMercator),
            32601..=32660 | 32701..=32760 | 25828..=25838 | 26901..=26923 => Some(Model::Utm),
            _ => None,
        };
    }
    if upper == "OGC:CRS84" || upper.starts_with("GEOGCS[") || upper.starts_with("GEOGCRS[") {
        return Some(Model::Geographic);
    }
    None
}

/// Area on the ellipsoid between the equator and latitude `phi` (radians), per radian of
/// longitude.
fn band_area(phi: f64) -> f64 {
    let e2 = F * (2.0 - F);
    let e = e2.sqrt();
    let b2 = A * A * (1.0 - e2);
    let s = phi.sin();
    let q = s / (1.0 - e2 * s * s) + (1.0 / (2.0 * e)) * ((1.0 + e * s) / (1.0 - e * s)).ln();
    b2 * q / 2.0
}

/// Ground area (m²) of the quadrangle between latitudes `lat0`, `lat1` and `dlon` degrees of
/// longitude.
fn quadrangle(lat0: f64, lat1: f64, dlon: f64) -> f64 {
    let (p0, p1) = (
        lat0.clamp(-90.0, 90.0).to_radians(),
        lat1.clamp(-90.0, 90.0).to_radians(),
    );
    (band_area(p1) - band_area(p0)).abs() * dlon.abs().to_radians()
}

fn mercator_lat(y: f64) -> f64 {
    (2.0 * (y / A).exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees()
}

impl Grid {
    /// The ground area (m²) of every pixel, row by row (`areas[row * width + col]`), or `None`
    /// when the grid is rotated or its CRS is not one measured here (see the module docs).
    pub fn ground_areas(&self) -> Option<Vec<f64>> {
        let t = &self.transform;
        if t[2] != 0.0 || t[4] != 0.0 {
            return None;
        }
        let model = model(&self.crs)?;
        let (w, h) = (self.width, self.height);
        let mut out = Vec::with_capacity(w.checked_mul(h)?);
        for row in 0..h {
            let y0 = t[3] + row as f64 * t[5];
            let y1 = y0 + t[5];
            match model {
                Model::Geographic => {
                    let a = quadrangle(y0, y1, t[1]);
                    out.extend(std::iter::repeat_n(a, w));
                }
                Model::WebMercator => {
                    let dlon = (t[1] / A).to_degrees();
                    let a = quadrangle(mercator_lat(y0), mercator_lat(y1), dlon);
                    out.extend(std::iter::repeat_n(a, w));
                }
                Model::Utm => {
                    let map = (t[1] * t[5]).abs();
                    out.extend((0..w).map(|col| {
                        let x = t[0] + (col as f64 + 0.5) * t[1] - 500_000.0;
                        // Transverse Mercator point scale to second order in the distance
                        // from the central meridian (better than 1e-6 within a zone).
                        let k = 0.9996 * (1.0 + x * x / (2.0 * A * A));
                        map / (k * k)
                    }));
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_degree_at_the_equator_and_the_whole_earth() {
        // One degree square at the equator: 12,308.8 km² on WGS 84.
        let g = Grid::north_up("EPSG:4326", 0.0, 1.0, 1.0, 1, 1);
        let a = g.ground_areas().unwrap()[0];
        assert!((a / 1e6 - 12_308.8).abs() < 1.0, "{a}");
        // The whole ellipsoid: 510,065,622 km².
        let earth = Grid::north_up("EPSG:4326", -180.0, 90.0, 1.0, 360, 180);
        let total: f64 = earth.ground_areas().unwrap().iter().sum();
        assert!((total / 1e6 - 510_065_621.7).abs() < 10.0, "{total}");
    }

    #[test]
    fn the_same_ground_in_three_crss_has_the_same_area() {
        // A 10 m pixel near Timberlea, Montreal (45.43 N) in UTM 18N...
        let utm = Grid::north_up("EPSG:32618", 585_080.0, 5_032_950.0, 10.0, 1, 1);
        let a_utm = utm.ground_areas().unwrap()[0];
        assert!((a_utm - 100.0).abs() < 0.2, "{a_utm}");
        // ... is about 100 m² in Web Mercator too, where the map says 2 x that.
        let lat = 45.43f64;
        let y = A
            * (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0)
                .tan()
                .ln();
        let side = 10.0 / lat.to_radians().cos();
        let merc = Grid::north_up("EPSG:3857", -8_228_000.0, y, side, 1, 1);
        let a_merc = merc.ground_areas().unwrap()[0];
        assert!((a_merc - 100.0).abs() < 1.0, "{a_merc}");
        assert!(merc.pixel_area() > 190.0);
        // ... and in degrees: 10 m of latitude is about 9.0e-5 degrees.
        let deg = 10.0 / 111_140.0;
        let geo = Grid {
            crs: "EPSG:4326".into(),
            transform: [-73.9, deg / lat.to_radians().cos(), 0.0, lat, 0.0, -deg],
            width: 1,
            height: 1,
        };
        let a_geo = geo.ground_areas().unwrap()[0];
        assert!((a_geo - 100.0).abs() < 1.0, "{a_geo}");
    }

    #[test]
    fn unknown_crs_and_rotated_grids_are_not_measured() {
        assert!(Grid::north_up("EPSG:2950", 0.0, 0.0, 10.0, 2, 2)
            .ground_areas()
            .is_none());
        let mut g = Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, 2, 2);
        g.transform[2] = 1.0;
        assert!(g.ground_areas().is_none());
    }
}
