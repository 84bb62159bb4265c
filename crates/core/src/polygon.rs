//! Areas of interest as polygons: read from a GeoJSON geometry and burned onto a grid.
//!
//! The burn is GDAL's rasterizer with `all_touched = false`, which is what rasterio's
//! `geometry_mask` and rioxarray's `clip` use: a pixel is inside when its centre is, the rings of
//! one geometry (a Polygon, or all the rings of a MultiPolygon) combined by the even-odd rule, and
//! the geometries of a GeometryCollection combined by union. Its scanline fill is written here
//! rather than called through GDAL so that core stays free of GDAL and any node (a plugin too) can
//! mask a window without a dataset.

use crate::Grid;

/// A ring: its vertices `[x, y]`, closed or not.
pub type Ring = Vec<[f64; 2]>;

/// One or more geometries, each a set of rings combined by the even-odd rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygons {
    /// Per geometry, its rings (a Polygon's exterior and holes, or every ring of a
    /// MultiPolygon).
    pub geometries: Vec<Vec<Ring>>,
}

/// The largest number of vertices an area of interest may have in all.
pub const MAX_VERTICES: usize = 1_000_000;

impl Polygons {
    /// Reads a GeoJSON geometry (as TOML or JSON turned TOML): a Polygon, a MultiPolygon, or a
    /// GeometryCollection of those. Positions need two finite numbers (more are ignored); rings
    /// need four positions.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn from_geojson(value: &toml::Value) -> Result<Self, String> {
        let mut geometries = Vec::new();
        let mut vertices = 0;
        read_geometry(value, &mut geometries, &mut vertices, 0)?;
        if geometries.is_empty() {
            return Err("the geometry collection holds no polygon".into());
        }
        Ok(Polygons { geometries })
    }

    /// `[min_x, min_y, max_x, max_y]` of every vertex.
    pub fn bbox(&self) -> [f64; 4] {
        let mut b = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for p in self.geometries.iter().flatten().flatten() {
            b[0] = b[0].min(p[0]);
            b[1] = b[1].min(p[1]);
            b[2] = b[2].max(p[0]);
            b[3] = b[3].max(p[1]);
        }
        b
    }

    /// True when the area and the rectangle `[min_x, min_y, max_x, max_y]` share a point: a
    /// vertex inside the rectangle, a corner of the rectangle inside the area (even-odd within a
    /// geometry, union across geometries), or an edge crossing one of the rectangle's (an edge
    /// on the line of one of the rectangle's but apart from it counts too: the answer errs on
    /// the side of meeting).
    pub fn meets_rect(&self, rect: [f64; 4]) -> bool {
        let [x0, y0, x1, y1] = rect;
        let in_rect = |p: &[f64; 2]| p[0] >= x0 && p[0] <= x1 && p[1] >= y0 && p[1] <= y1;
        if self.geometries.iter().flatten().flatten().any(in_rect) {
            return true;
        }
        let corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
        let inside = |q: [f64; 2]| {
            self.geometries.iter().any(|rings| {
                let mut odd = false;
                for ring in rings {
                    for (a, b) in ring.iter().zip(ring.iter().cycle().skip(1)) {
                        if (a[1] > q[1]) != (b[1] > q[1])
                            && q[0] < a[0] + (q[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
                        {
                            odd = !odd;
                        }
                    }
                }
                odd
            })
        };
        if corners.iter().any(|&c| inside(c)) {
            return true;
        }
        let sides: Vec<([f64; 2], [f64; 2])> =
            (0..4).map(|i| (corners[i], corners[(i + 1) % 4])).collect();
        self.geometries.iter().flatten().any(|ring| {
            ring.iter()
                .zip(ring.iter().cycle().skip(1))
                .any(|(a, b)| sides.iter().any(|&(c, d)| segments_cross(*a, *b, c, d)))
        })
    }

    /// The same polygons with every vertex moved by `f` (a reprojection: vertices only, edges
    /// stay straight, as GDAL does when it rasterizes a geometry in another CRS).
    ///
    /// # Errors
    /// The first error of `f`.
    pub fn map_vertices<E>(
        &self,
        mut f: impl FnMut(&mut [[f64; 2]]) -> Result<(), E>,
    ) -> Result<Polygons, E> {
        let mut out = self.clone();
        for ring in out.geometries.iter_mut().flatten() {
            f(ring)?;
        }
        Ok(out)
    }

    /// Which pixels of the north-up `grid` are inside (row-major, `grid.len()` entries), the
    /// polygons' vertices being in the grid's CRS. A grid that is not north-up has no pixel
    /// inside: callers reproject onto north-up grids only.
    pub fn inside(&self, grid: &Grid) -> Vec<bool> {
        let mut mask = vec![false; grid.len()];
        let t = grid.transform;
        if t[2] != 0.0 || t[4] != 0.0 || t[1] == 0.0 || t[5] == 0.0 {
            return mask;
        }
        // Vertices in pixel / line coordinates, as GDAL's rasterizer works.
        let to_pixel = |p: &[f64; 2]| [(p[0] - t[0]) / t[1], (p[1] - t[3]) / t[5]];
        let mut crossings: Vec<f64> = Vec::new();
        for rings in &self.geometries {
            let rings: Vec<Vec<[f64; 2]>> = rings
                .iter()
                .map(|r| r.iter().map(to_pixel).collect())
                .collect();
            let (lo, hi) = rings
                .iter()
                .flatten()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p[1]), hi.max(p[1]))
                });
            let first = (lo - 0.5).ceil().max(0.0) as usize;
            let last = ((hi - 0.5).floor() + 1.0).clamp(0.0, grid.height as f64) as usize;
            for row in first..last {
                let y = row as f64 + 0.5;
                crossings.clear();
                for ring in &rings {
                    let n = ring.len();
                    for i in 0..n {
                        let (a, b) = (ring[i], ring[(i + 1) % n]);
                        let (a, b) = if a[1] <= b[1] { (a, b) } else { (b, a) };
                        if a[1] == b[1] || y < a[1] || y >= b[1] {
                            continue; // horizontal, or not crossed by this scanline
                        }
                        crossings.push((y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]) + a[0]);
                    }
                }
                crossings.sort_by(f64::total_cmp);
                let line = &mut mask[row * grid.width..(row + 1) * grid.width];
                for pair in crossings.chunks_exact(2) {
                    // Columns whose centre c + 0.5 lies in [x0, x1), as GDAL rounds them.
                    let from = (pair[0] + 0.5).floor().clamp(0.0, grid.width as f64) as usize;
                    let to = (pair[1] + 0.5).floor().clamp(0.0, grid.width as f64) as usize;
                    for cell in line.iter_mut().take(to).skip(from) {
                        *cell = true;
                    }
                }
            }
        }
        mask
    }
}

/// True when segments `ab` and `cd` cross (touching counts).
fn segments_cross(a: [f64; 2], b: [f64; 2], c: [f64; 2], d: [f64; 2]) -> bool {
    let side = |p: [f64; 2], q: [f64; 2], r: [f64; 2]| {
        (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    };
    let (d1, d2) = (side(c, d, a), side(c, d, b));
    let (d3, d4) = (side(a, b, c), side(a, b, d));
    (d1 * d2 <= 0.0) && (d3 * d4 <= 0.0)
}

fn read_geometry(
    value: &toml::Value,
    out: &mut Vec<Vec<Ring>>,
    vertices: &mut usize,
    depth: usize,
) -> Result<(), String> {
    let table = value
        .as_table()
        .ok_or("a GeoJSON geometry is a table with `type` and `coordinates`")?;
    let kind = table
        .get("type")
        .and_then(toml::Value::as_str)
        .ok_or("a GeoJSON geometry needs a string `type`")?;
    let coordinates = || {
        table
            .get("coordinates")
            .ok_or_else(|| format!("the {kind} has no `coordinates`"))
    };
    match kind {
        "Polygon" => out.push(read_rings(coordinates()?, vertices)?),
        "MultiPolygon" => {
            let polygons = coordinates()?
                .as_array()
                .ok_or("a MultiPolygon's coordinates are an array of polygons")?;
            if polygons.is_empty() {
                return Err("the MultiPolygon has no polygon".into());
            }
            let mut rings = Vec::new();
            for p in polygons {
                rings.extend(read_rings(p, vertices)?);
            }
            out.push(rings);
        }
        "GeometryCollection" if depth == 0 => {
            let geometries = table
                .get("geometries")
                .and_then(toml::Value::as_array)
                .ok_or("a GeometryCollection needs an array `geometries`")?;
            for g in geometries {
                read_geometry(g, out, vertices, depth + 1)?;
            }
        }
        other => {
            return Err(format!(
            "an area is a Polygon, a MultiPolygon or a GeometryCollection of them, not a {other}"
        ))
        }
    }
    Ok(())
}

fn read_rings(value: &toml::Value, vertices: &mut usize) -> Result<Vec<Ring>, String> {
    let rings = value
        .as_array()
        .ok_or("a Polygon's coordinates are an array of rings")?;
    if rings.is_empty() {
        return Err("a Polygon needs at least one ring".into());
    }
    rings
        .iter()
        .map(|ring| {
            let positions = ring.as_array().ok_or("a ring is an array of positions")?;
            if positions.len() < 4 {
                return Err(format!(
                    "a Polygon ring needs at least 4 positions, this one has {}",
                    positions.len()
                ));
            }
            *vertices += positions.len();
            if *vertices > MAX_VERTICES {
                return Err(format!("more than {MAX_VERTICES} vertices in all"));
            }
            positions.iter().map(read_position).collect()
        })
        .collect()
}

fn read_position(value: &toml::Value) -> Result<[f64; 2], String> {
    let number = |v: &toml::Value| match v {
        toml::Value::Float(f) if f.is_finite() => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    };
    match value.as_array().map(Vec::as_slice) {
        Some([x, y, ..]) => match (number(x), number(y)) {
            (Some(x), Some(y)) => Ok([x, y]),
            _ => Err(format!("a position holds finite numbers, not {value}")),
        },
        _ => Err(format!("a position is [x, y], not {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(text: &str) -> toml::Value {
        toml::from_str::<toml::Table>(&format!("g = {text}")).unwrap()["g"].clone()
    }

    fn picture(p: &Polygons, grid: &Grid) -> Vec<String> {
        p.inside(grid)
            .chunks(grid.width)
            .map(|row| row.iter().map(|&i| if i { '#' } else { '.' }).collect())
            .collect()
    }

    #[test]
    fn rectangles_meet_an_area_through_vertices_corners_or_crossing_edges() {
        // A square from 0 to 10 with a hole from 3 to 7, and a triangle far away.
        let p = Polygons::from_geojson(&geometry(
            "{ type = \"MultiPolygon\", coordinates = [\
             [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], [[3, 3], [7, 3], [7, 7], [3, 7], [3, 3]]], \
             [[[20, 20], [22, 20], [21, 22], [20, 20]]]] }",
        ))
        .unwrap();
        assert!(p.meets_rect([-1.0, -1.0, 1.0, 1.0]), "a vertex inside");
        assert!(p.meets_rect([1.0, 1.0, 2.0, 2.0]), "inside the square");
        assert!(!p.meets_rect([4.0, 4.0, 6.0, 6.0]), "inside the hole");
        assert!(
            p.meets_rect([-5.0, 4.0, 15.0, 6.0]),
            "edges crossing, no vertex inside"
        );
        assert!(!p.meets_rect([11.0, 11.0, 19.0, 19.0]), "between the two");
        assert!(
            p.meets_rect([20.5, 20.5, 21.0, 21.0]),
            "inside the triangle"
        );
    }

    #[test]
    fn pixel_centres_inside_are_burned_with_holes_by_even_odd() {
        // A 6 x 6 grid of unit pixels from (0, 6); a square from 1 to 5 with a hole from 2 to 4.
        let grid = Grid::north_up("EPSG:3857", 0.0, 6.0, 1.0, 6, 6);
        let p = Polygons::from_geojson(&geometry(
            "{ type = \"Polygon\", coordinates = [[[1, 1], [5, 1], [5, 5], [1, 5], [1, 1]], \
             [[2, 2], [4, 2], [4, 4], [2, 4], [2, 2]]] }",
        ))
        .unwrap();
        assert_eq!(
            picture(&p, &grid),
            ["......", ".####.", ".#..#.", ".#..#.", ".####.", "......"]
        );
        assert_eq!(p.bbox(), [1.0, 1.0, 5.0, 5.0]);
    }

    #[test]
    fn a_pixel_is_in_only_when_its_centre_is() {
        // A triangle whose hypotenuse cuts pixels: all_touched = false keeps only the pixels
        // whose centre is below it.
        let grid = Grid::north_up("EPSG:3857", 0.0, 4.0, 1.0, 4, 4);
        let p = Polygons::from_geojson(&geometry(
            "{ type = \"Polygon\", coordinates = [[[0, 0], [4, 0], [0, 3], [0, 0]]] }",
        ))
        .unwrap();
        assert_eq!(picture(&p, &grid), ["....", "#...", "##..", "###."]);
    }

    #[test]
    fn collections_are_unions_and_outside_the_grid_is_nothing() {
        let grid = Grid::north_up("EPSG:3857", 0.0, 2.0, 1.0, 2, 2);
        let p = Polygons::from_geojson(&geometry(
            "{ type = \"GeometryCollection\", geometries = [\
             { type = \"Polygon\", coordinates = [[[0, 0], [2, 0], [2, 1], [0, 1], [0, 0]]] },\
             { type = \"Polygon\", coordinates = [[[0, 0], [1, 0], [1, 2], [0, 2], [0, 0]]] },\
             { type = \"MultiPolygon\", coordinates = [[[[50, 50], [60, 50], [60, 60], [50, 50]]]] }] }",
        ))
        .unwrap();
        assert_eq!(picture(&p, &grid), ["#.", "##"]);
    }

    #[test]
    fn malformed_geometries_are_refused_in_words() {
        for (text, says) in [
            ("3", "a GeoJSON geometry is a table"),
            ("{ type = \"Point\", coordinates = [1, 2] }", "not a Point"),
            ("{ type = \"Polygon\" }", "no `coordinates`"),
            (
                "{ type = \"Polygon\", coordinates = [] }",
                "at least one ring",
            ),
            (
                "{ type = \"Polygon\", coordinates = [[[0, 0], [1, 1], [0, 0]]] }",
                "4 positions",
            ),
            (
                "{ type = \"Polygon\", coordinates = [[[0], [1, 1], [1, 0], [0]]] }",
                "[x, y]",
            ),
            (
                "{ type = \"Polygon\", coordinates = [[[0, nan], [1, 1], [1, 0], [0, 0]]] }",
                "finite",
            ),
            (
                "{ type = \"GeometryCollection\", geometries = [] }",
                "no polygon",
            ),
        ] {
            let err = Polygons::from_geojson(&geometry(text)).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
