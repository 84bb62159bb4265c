//! PNG quicklooks: the RGB composite (2-98 % stretch per band, first time step) on the left, the
//! class map on the right, and a legend of colour swatches and class names.

use std::path::Path;

use flow_core::{ClassInfo, Labels, NodeError, Raster};
use gdal::raster::Buffer;
use gdal::DriverManager;

use super::font;
use crate::error::{RasterError, Result};

const MARGIN: usize = 12;
const GAP: usize = 16;
const TEXT_SCALE: usize = 2;
const TITLE_H: usize = font::GLYPH_H * TEXT_SCALE + 8;
const SWATCH: usize = 14;
const LEGEND_ROW: usize = 20;
const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];

/// An RGB image in memory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Image {
    pub width: usize,
    pub height: usize,
    /// Row-major RGB triples.
    pub pixels: Vec<[u8; 3]>,
}

impl Image {
    pub(crate) fn new(width: usize, height: usize) -> Self {
        Image {
            width,
            height,
            pixels: vec![WHITE; width * height],
        }
    }

    pub(crate) fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            self.pixels[y * self.width + x] = c;
        }
    }

    pub(crate) fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, c);
            }
        }
    }

    fn text(&mut self, s: &str, x: usize, y: usize) {
        font::draw(s, x, y, TEXT_SCALE, |px, py| self.put(px, py, BLACK));
    }
}

/// How much a `w x h` map is enlarged (or shrunk) in its panel: small maps grow to about 400 px,
/// large ones shrink to at most 2048 px.
pub(crate) fn panel_scale(w: usize, h: usize) -> f64 {
    let m = w.max(h).max(1);
    if m < 400 {
        400usize.div_ceil(m) as f64
    } else if m > 2048 {
        2048.0 / m as f64
    } else {
        1.0
    }
}

/// The size of a figure with panels of a `w x h` map: (width, height, panel width, panel height).
pub(crate) fn layout(
    w: usize,
    h: usize,
    panels: usize,
    legend: Option<&[ClassInfo]>,
) -> (usize, usize, usize, usize) {
    let s = panel_scale(w, h);
    let (pw, ph) = (
        ((w as f64 * s).round() as usize).max(1),
        ((h as f64 * s).round() as usize).max(1),
    );
    let mut width = MARGIN + panels * pw + (panels - 1) * GAP + MARGIN;
    let mut height = MARGIN + TITLE_H + ph + MARGIN;
    if let Some(classes) = legend {
        let text = classes
            .iter()
            .map(|c| font::text_width(&c.name, TEXT_SCALE))
            .max()
            .unwrap_or(0);
        width += GAP + SWATCH + 8 + text.max(font::text_width("Legend", TEXT_SCALE));
        height = height.max(MARGIN + TITLE_H + classes.len() * LEGEND_ROW + MARGIN);
    }
    (width, height, pw, ph)
}

/// Value at fraction `q` of `values` in order (linear interpolation, like numpy's percentile),
/// found by selection rather than a sort; `values` is reordered.
fn quantile(values: &mut [f32], q: f64) -> f32 {
    if values.is_empty() {
        return f32::NAN;
    }
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let t = (pos - lo as f64) as f32;
    let (_, below, above) = values.select_nth_unstable_by(lo, f32::total_cmp);
    let a = *below;
    // The next value in order is the smallest of those after it.
    let b = if hi == lo {
        a
    } else {
        above.iter().copied().min_by(f32::total_cmp).unwrap_or(a)
    };
    a * (1.0 - t) + b * t
}

/// The bands of `r` that `bands` name (names or common names; `red`, `green` and `blue` fall
/// back to Sentinel-2's B04, B03 and B02 where no band has that common name).
fn rgb_indices(r: &Raster, bands: &[String; 3]) -> Result<[usize; 3], NodeError> {
    let one = |name: &String| {
        r.band_index(name)
            .or_else(|| {
                let key = match name.to_ascii_lowercase().as_str() {
                    "red" => "B04",
                    "green" => "B03",
                    "blue" => "B02",
                    _ => return None,
                };
                r.band_index(key)
            })
            .ok_or_else(|| {
                let names: Vec<&str> = r.bands.iter().map(|b| b.name.as_str()).collect();
                NodeError::InvalidData(format!(
                    "write: no band `{name}` for the RGB composite; the raster has {}",
                    names.join(", ")
                ))
            })
    };
    Ok([one(&bands[0])?, one(&bands[1])?, one(&bands[2])?])
}

/// The RGB composite of `bands` (names or common names; `red`, `green` and `blue` fall back to
/// Sentinel-2's B04, B03 and B02 where no band has that common name) at the first time step,
/// each band stretched from its 2nd to its 98th percentile; None where any of the three is NaN.
pub(crate) fn composite(
    r: &Raster,
    bands: &[String; 3],
) -> Result<Vec<Option<[u8; 3]>>, NodeError> {
    let (_, _, h, w) = r.data.dim();
    if r.data.shape()[0] == 0 {
        return Err(NodeError::InvalidData(
            "write: the RGB raster has no time step".into(),
        ));
    }
    let mut channels = Vec::with_capacity(3);
    for b in rgb_indices(r, bands)? {
        let plane = r.data.slice(ndarray::s![0, b, .., ..]);
        let mut finite: Vec<f32> = plane.iter().copied().filter(|v| v.is_finite()).collect();
        let (lo, hi) = (quantile(&mut finite, 0.02), quantile(&mut finite, 0.98));
        let span = if hi > lo { hi - lo } else { 1.0 };
        channels.push(
            plane
                .iter()
                .map(|&v| {
                    v.is_finite()
                        .then(|| (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8)
                })
                .collect::<Vec<_>>(),
        );
    }
    Ok((0..w * h)
        .map(|i| Some([channels[0][i]?, channels[1][i]?, channels[2][i]?]))
        .collect())
}

/// Draws `pixels` (`w x h`, None = nodata, shown white) into a panel at `(x0, y0)`.
fn blit(
    img: &mut Image,
    pixels: &[Option<[u8; 3]>],
    (w, h): (usize, usize),
    (x0, y0): (usize, usize),
    (pw, ph): (usize, usize),
) {
    for py in 0..ph {
        let sy = (py * h / ph).min(h - 1);
        for px in 0..pw {
            let sx = (px * w / pw).min(w - 1);
            img.put(x0 + px, y0 + py, pixels[sy * w + sx].unwrap_or(WHITE));
        }
    }
}

/// Builds the figure: the RGB panel (when given), the class map and its legend (when given).
pub(crate) fn figure(
    labels: Option<(&Labels, &[ClassInfo])>,
    rgb: Option<(&Raster, &[String; 3])>,
) -> Result<Image, NodeError> {
    let (w, h) = match (labels, rgb) {
        (Some((l, _)), _) => (l.grid.width, l.grid.height),
        (None, Some((r, _))) => (r.grid.width, r.grid.height),
        (None, None) => return Err(NodeError::InvalidData("write: nothing to draw".into())),
    };
    if w == 0 || h == 0 {
        return Err(NodeError::InvalidData("write: the map is empty".into()));
    }
    if let (Some((l, _)), Some((r, _))) = (labels, rgb) {
        if (r.grid.width, r.grid.height) != (l.grid.width, l.grid.height) {
            return Err(NodeError::InvalidData(format!(
                "write: the RGB raster is {} x {} pixels but the class map is {} x {}",
                r.grid.width, r.grid.height, l.grid.width, l.grid.height
            )));
        }
    }
    let panels = usize::from(labels.is_some()) + usize::from(rgb.is_some());
    let (width, height, pw, ph) = layout(w, h, panels, labels.map(|(_, c)| c));
    let mut img = Image::new(width, height);
    let top = MARGIN + TITLE_H;
    let mut x = MARGIN;
    if let Some((r, bands)) = rgb {
        let pixels = composite(r, bands)?;
        // The bands drawn, by their own names.
        let [i, j, k] = rgb_indices(r, bands)?;
        img.text(
            &format!(
                "RGB {} {} {}",
                r.bands[i].name, r.bands[j].name, r.bands[k].name
            ),
            x,
            MARGIN,
        );
        blit(&mut img, &pixels, (w, h), (x, top), (pw, ph));
        x += pw + GAP;
    }
    if let Some((l, classes)) = labels {
        let colour = |v: u16| {
            if v == l.nodata {
                None
            } else {
                Some(
                    classes
                        .iter()
                        .find(|c| c.id == v)
                        .map(|c| c.color)
                        .unwrap_or([0, 0, 0]),
                )
            }
        };
        let pixels: Vec<Option<[u8; 3]>> = l.data.iter().map(|&v| colour(v)).collect();
        img.text(&format!("Classes (k={})", classes.len()), x, MARGIN);
        blit(&mut img, &pixels, (w, h), (x, top), (pw, ph));
        x += pw + GAP;
        img.text("Legend", x, MARGIN);
        for (i, c) in classes.iter().enumerate() {
            let y = top + i * LEGEND_ROW;
            img.rect(x, y, SWATCH, SWATCH, BLACK);
            img.rect(x + 1, y + 1, SWATCH - 2, SWATCH - 2, c.color);
            img.text(&c.name, x + SWATCH + 8, y);
        }
    }
    Ok(img)
}

/// Saves an image as PNG (built in a MEM dataset, then CreateCopy: the PNG driver cannot Create).
pub(crate) fn save(img: &Image, path: &Path) -> Result<()> {
    let what = format!("writing {}", path.display());
    let err = |e: gdal::errors::GdalError| RasterError::gdal(&what, e);
    let mem = DriverManager::get_driver_by_name("MEM").map_err(err)?;
    let ds = mem
        .create_with_band_type::<u8, _>("", img.width, img.height, 3)
        .map_err(err)?;
    for c in 0..3 {
        let data: Vec<u8> = img.pixels.iter().map(|p| p[c]).collect();
        ds.rasterband(c + 1)
            .map_err(err)?
            .write(
                (0, 0),
                (img.width, img.height),
                &mut Buffer::new((img.width, img.height), data),
            )
            .map_err(err)?;
    }
    super::geotiff::create_copy(&ds, "PNG", ["ZLEVEL=6"], path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let mut v: Vec<f32> = (0..=100).rev().map(|i| i as f32).collect();
        assert_eq!(quantile(&mut v, 0.02), 2.0);
        assert_eq!(quantile(&mut v, 0.98), 98.0);
        // Between two values, as numpy interpolates.
        let mut w = vec![3.0, 1.0, 2.0, 0.0];
        assert_eq!(quantile(&mut w, 0.5), 1.5);
    }

    /// A 1 x 3 x 2 x 2 raster whose band `i` holds `i + 1` on a ramp, with these names and
    /// common names.
    fn three_bands(names: [(&str, Option<&str>); 3]) -> Raster {
        Raster {
            data: ndarray::Array4::from_shape_fn((1, 3, 2, 2), |(_, b, y, x)| {
                (b + 1) as f32 * (1 + y * 2 + x) as f32
            }),
            grid: flow_core::Grid::north_up("EPSG:32618", 0.0, 20.0, 10.0, 2, 2),
            bands: names
                .iter()
                .map(|(n, c)| flow_core::BandInfo {
                    scaling: Default::default(),
                    name: n.to_string(),
                    common_name: c.map(String::from),
                    wavelength: None,
                })
                .collect(),
            times: vec!["t".into()],
        }
    }

    #[test]
    fn red_green_blue_are_found_by_common_name_or_sentinel_2_key() {
        let rgb = super::super::DEFAULT_RGB_BANDS.map(String::from);
        // Landsat-like: the keys say nothing, the common names do (in another order).
        let landsat = three_bands([
            ("SR_B2", Some("blue")),
            ("SR_B3", Some("green")),
            ("SR_B4", Some("red")),
        ]);
        // Sentinel-2 keys without common names.
        let s2 = three_bands([("B02", None), ("B03", None), ("B04", None)]);
        let a = composite(&landsat, &rgb).unwrap();
        let b = composite(&s2, &rgb).unwrap();
        assert_eq!(a, b);
        let keys = ["B04", "B03", "B02"].map(String::from);
        assert_eq!(composite(&s2, &keys).unwrap(), b);
        let other = three_bands([("a", None), ("b", None), ("c", None)]);
        let e = composite(&other, &rgb).unwrap_err().to_string();
        assert!(e.contains("no band `red`"), "{e}");
    }

    #[test]
    fn small_maps_are_enlarged() {
        assert_eq!(panel_scale(228, 207), 2.0);
        assert_eq!(panel_scale(1000, 10), 1.0);
        assert_eq!(panel_scale(4096, 10), 0.5);
    }
}
