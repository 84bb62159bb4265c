//! GeoTIFF and COG output: f32 rasters with NaN nodata and band descriptions; class maps as Byte
//! (or UInt16) with nodata, a colour table and category names.

use std::path::Path;

use flow_core::{ClassInfo, Grid, Labels, Raster};
use gdal::raster::{
    Buffer, ColorEntry, ColorInterpretation, ColorTable, GdalType, PaletteInterpretation,
    RasterCreationOptions,
};
use gdal::spatial_ref::SpatialRef;
use gdal::{Dataset, DriverManager, Metadata};

use crate::error::{RasterError, Result};
use crate::gdalx;

/// A MEM dataset of `bands` bands of `T` on `grid`.
pub(crate) fn mem_on_grid<T: GdalType>(grid: &Grid, bands: usize, what: &str) -> Result<Dataset> {
    let err = |e: gdal::errors::GdalError| RasterError::gdal(what, e);
    let mem = DriverManager::get_driver_by_name("MEM").map_err(err)?;
    let mut ds = mem
        .create_with_band_type::<T, _>("", grid.width, grid.height, bands)
        .map_err(err)?;
    ds.set_geo_transform(&grid.transform).map_err(err)?;
    let srs = match grid.epsg() {
        Some(code) => SpatialRef::from_epsg(code),
        None => SpatialRef::from_definition(&grid.crs),
    }
    .map_err(err)?;
    ds.set_spatial_ref(&srs).map_err(err)?;
    Ok(ds)
}

/// Copies `mem` to `path` with the GTiff or COG driver, DEFLATE-compressed.
pub(crate) fn copy_out(mem: &Dataset, path: &Path, cog: bool, predictor: &str) -> Result<()> {
    let (driver, options) = if cog {
        (
            "COG",
            vec![
                "COMPRESS=DEFLATE".to_string(),
                format!("PREDICTOR={}", if predictor == "1" { "NO" } else { "YES" }),
            ],
        )
    } else {
        (
            "GTiff",
            vec![
                "COMPRESS=DEFLATE".to_string(),
                "TILED=YES".to_string(),
                format!("PREDICTOR={predictor}"),
            ],
        )
    };
    create_copy(mem, driver, options, path)
}

/// Copies `src` into a new `path` with GDAL driver `driver` and creation `options`; a failure
/// GDAL only reports (not in the return value) counts too. A failure to write the file (no
/// space left, an I/O or permission error) is [`RasterError::Io`].
pub(crate) fn create_copy<S: ToString>(
    src: &Dataset,
    driver: &str,
    options: impl IntoIterator<Item = S>,
    path: &Path,
) -> Result<()> {
    let what = format!("writing {}", path.display());
    let err = |e: gdal::errors::GdalError| RasterError::gdal(&what, e);
    let driver = DriverManager::get_driver_by_name(driver).map_err(err)?;
    let options = RasterCreationOptions::from_iter(options.into_iter().map(|o| o.to_string()));
    let capture = gdalx::ErrorCapture::start();
    let written = src
        .create_copy(&driver, path, &options)
        .and_then(|out| out.close());
    let failures: Vec<gdalx::GdalMessage> = capture
        .messages()
        .into_iter()
        .filter(gdalx::GdalMessage::is_failure)
        .collect();
    if let Some(source) = io_failure(&failures) {
        return Err(RasterError::io(path, source));
    }
    if !failures.is_empty() {
        let text: Vec<&str> = failures.iter().map(|m| m.text.as_str()).collect();
        return Err(RasterError::Gdal {
            context: what,
            message: text.join("; "),
        });
    }
    written.map_err(err)
}

/// Words of GDAL and libtiff messages about a file that could not be written.
const IO_WORDS: [&str; 8] = [
    "no space left",
    "disk full",
    "quota exceeded",
    "write error",
    "seek error",
    "io error",
    "i/o error",
    "read-only file system",
];

/// The I/O error that GDAL's `failures` while writing a file describe, if they do: one
/// numbered CPLE_FileIO or CPLE_OpenFailed, or worded like one. No space left on the device is
/// [`std::io::ErrorKind::StorageFull`].
pub(crate) fn io_failure(failures: &[gdalx::GdalMessage]) -> Option<std::io::Error> {
    let lower: Vec<String> = failures
        .iter()
        .map(|m| m.text.to_ascii_lowercase())
        .collect();
    let io = failures
        .iter()
        .any(|m| matches!(m.number, gdalx::errno::FILE_IO | gdalx::errno::OPEN_FAILED))
        || lower.iter().any(|t| IO_WORDS.iter().any(|w| t.contains(w)));
    if !io {
        return None;
    }
    let full = lower
        .iter()
        .any(|t| t.contains("no space left") || t.contains("disk full"));
    let kind = if full {
        std::io::ErrorKind::StorageFull
    } else {
        std::io::ErrorKind::Other
    };
    // The first message that names the cause, else the first one.
    let first = failures
        .iter()
        .zip(&lower)
        .find(|(_, t)| IO_WORDS.iter().any(|w| t.contains(w)))
        .map(|(m, _)| m)
        .or(failures.first())?;
    let mut text = first.text.clone();
    if full && !lower.iter().any(|t| t.contains("no space left on device")) {
        text.push_str(" (no space left on device)");
    }
    Some(std::io::Error::new(kind, text))
}

/// Writes a raster as Float32 with NaN nodata: one band per (time, band), described by the band
/// name (and the time when there are several).
pub(crate) fn write_raster(r: &Raster, path: &Path, cog: bool) -> Result<()> {
    let what = format!("writing {}", path.display());
    let err = |e: gdal::errors::GdalError| RasterError::gdal(&what, e);
    let (nt, nb, h, w) = r.data.dim();
    let mut mem = mem_on_grid::<f32>(&r.grid, (nt * nb).max(1), &what)?;
    for t in 0..nt {
        for b in 0..nb {
            let mut band = mem.rasterband(t * nb + b + 1).map_err(err)?;
            band.set_no_data_value(Some(f64::NAN)).map_err(err)?;
            let info = &r.bands[b];
            let description = if nt > 1 {
                format!("{} {}", r.times[t], info.name)
            } else {
                info.name.clone()
            };
            band.set_description(&description).map_err(err)?;
            if let Some(c) = &info.common_name {
                band.set_metadata_item("common_name", c, "").map_err(err)?;
            }
            if let Some(wl) = info.wavelength {
                band.set_metadata_item("wavelength", &format!("{wl}"), "")
                    .map_err(err)?;
            }
            if let Some(time) = r.times.get(t) {
                band.set_metadata_item("datetime", time, "").map_err(err)?;
            }
            let plane: Vec<f32> = r
                .data
                .slice(ndarray::s![t, b, .., ..])
                .iter()
                .copied()
                .collect();
            band.write((0, 0), (w, h), &mut Buffer::new((w, h), plane))
                .map_err(err)?;
        }
    }
    mem.flush_cache().map_err(err)?;
    copy_out(&mem, path, cog, "3")
}

/// Writes a class map: Byte when every class id is below 255 (nodata 255 unless the map's own
/// nodata fits), else UInt16; with a colour table and category names.
pub(crate) fn write_labels(
    l: &Labels,
    classes: &[ClassInfo],
    path: &Path,
    cog: bool,
) -> Result<()> {
    let what = format!("writing {}", path.display());
    let err = |e: gdal::errors::GdalError| RasterError::gdal(&what, e);
    let max_class = l
        .data
        .iter()
        .filter(|&&v| v != l.nodata)
        .copied()
        .max()
        .unwrap_or(0)
        .max(classes.iter().map(|c| c.id).max().unwrap_or(0));
    let (w, h) = (l.grid.width, l.grid.height);
    let byte = max_class < 255;
    let nodata: u16 = if byte && l.nodata > 255 {
        255
    } else {
        l.nodata
    };
    let mut mem = if byte {
        let mem = mem_on_grid::<u8>(&l.grid, 1, &what)?;
        let data: Vec<u8> = l
            .data
            .iter()
            .map(|&v| if v == l.nodata { nodata as u8 } else { v as u8 })
            .collect();
        mem.rasterband(1)
            .map_err(err)?
            .write((0, 0), (w, h), &mut Buffer::new((w, h), data))
            .map_err(err)?;
        mem
    } else {
        let mem = mem_on_grid::<u16>(&l.grid, 1, &what)?;
        let data: Vec<u16> = l.data.iter().copied().collect();
        mem.rasterband(1)
            .map_err(err)?
            .write((0, 0), (w, h), &mut Buffer::new((w, h), data))
            .map_err(err)?;
        mem
    };
    {
        let mut band = mem.rasterband(1).map_err(err)?;
        band.set_no_data_value(Some(nodata as f64)).map_err(err)?;
        band.set_description("class").map_err(err)?;
        // Colour table: one entry per id up to the largest class (and nodata, transparent, for Byte).
        let entries = if byte {
            max_class.max(nodata) as usize + 1
        } else {
            max_class as usize + 1
        };
        let mut table = ColorTable::new(PaletteInterpretation::Rgba);
        for id in 0..entries {
            let entry = match classes.iter().find(|c| c.id as usize == id) {
                Some(c) => {
                    ColorEntry::rgba(c.color[0].into(), c.color[1].into(), c.color[2].into(), 255)
                }
                None => ColorEntry::rgba(0, 0, 0, 0),
            };
            table.set_color_entry(id as u16, &entry);
        }
        band.set_color_table(&table);
        band.set_color_interpretation(ColorInterpretation::PaletteIndex)
            .map_err(err)?;
        let names: Vec<String> = (0..=max_class as usize)
            .map(|id| {
                classes
                    .iter()
                    .find(|c| c.id as usize == id)
                    .map(|c| c.name.clone())
                    .unwrap_or_default()
            })
            .collect();
        gdalx::set_category_names(&band, &names).map_err(|m| RasterError::Gdal {
            context: what.clone(),
            message: m,
        })?;
    }
    mem.flush_cache().map_err(err)?;
    copy_out(&mem, path, cog, "1")
}
