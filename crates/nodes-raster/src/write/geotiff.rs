//! GeoTIFF and COG output: f32 rasters with NaN nodata and band descriptions; class maps as Byte
//! (or UInt16) with nodata, a colour table and category names.
//!
//! A value held whole goes through a MEM dataset copied out by the GTiff or COG driver. A
//! windowed value ([`Deferred`]) is never held whole: a tiled GeoTIFF is created empty and each
//! window's block is written into it as the window is computed (windows on the run's threads,
//! writes one at a time); a COG is then copied from that GeoTIFF, a temporary file beside the
//! target ([`cog_source`]), so GDAL builds its overviews from the file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flow_core::deferred::Deferred;
use flow_core::window::Window;
use flow_core::{ClassInfo, Grid, Labels, NodeError, Raster, RunContext, Value};
use gdal::raster::{
    Buffer, ColorEntry, ColorInterpretation, ColorTable, GdalType, PaletteInterpretation,
    RasterBand, RasterCreationOptions,
};
use gdal::spatial_ref::SpatialRef;
use gdal::{Dataset, DatasetOptions, DriverManager, GdalOpenFlags, Metadata};
use ndarray::{s, Axis};

use crate::error::{RasterError, Result};
use crate::gdalx;

/// A MEM dataset of `bands` bands of `T` on `grid`.
pub(crate) fn mem_on_grid<T: GdalType>(grid: &Grid, bands: usize, what: &str) -> Result<Dataset> {
    let err = |e: gdal::errors::GdalError| RasterError::gdal(what, e);
    let mem = DriverManager::get_driver_by_name("MEM").map_err(err)?;
    let mut ds = mem
        .create_with_band_type::<T, _>("", grid.width, grid.height, bands)
        .map_err(err)?;
    georeference(&mut ds, grid, what)?;
    Ok(ds)
}

/// Sets the geotransform and spatial reference of `ds` to `grid`'s.
fn georeference(ds: &mut Dataset, grid: &Grid, what: &str) -> Result<()> {
    let err = |e: gdal::errors::GdalError| RasterError::gdal(what, e);
    ds.set_geo_transform(&grid.transform).map_err(err)?;
    let srs = match grid.epsg() {
        Some(code) => SpatialRef::from_epsg(code),
        None => SpatialRef::from_definition(&grid.crs),
    }
    .map_err(err)?;
    ds.set_spatial_ref(&srs).map_err(err)
}

/// Creation options of the GTiff driver for flow's GeoTIFFs: tiled, DEFLATE-compressed, with
/// `predictor` (1 none, 3 floating point).
fn gtiff_options(predictor: &str) -> Vec<String> {
    vec![
        "COMPRESS=DEFLATE".to_string(),
        "TILED=YES".to_string(),
        format!("PREDICTOR={predictor}"),
    ]
}

/// Copies `src` to `path` with the GTiff or COG driver, DEFLATE-compressed.
pub(crate) fn copy_out(src: &Dataset, path: &Path, cog: bool, predictor: &str) -> Result<()> {
    if cog {
        // Blocks are compressed on every core (the same bytes as on one).
        let options = vec![
            "COMPRESS=DEFLATE".to_string(),
            format!("PREDICTOR={}", if predictor == "1" { "NO" } else { "YES" }),
            "NUM_THREADS=ALL_CPUS".to_string(),
        ];
        create_copy(src, "COG", options, path)
    } else {
        create_copy(src, "GTiff", gtiff_options(predictor), path)
    }
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
    checked(path, || {
        src.create_copy(&driver, path, &options)
            .and_then(|out| out.close())
    })
}

/// Runs `call`, a GDAL call writing `path`, with GDAL's messages captured: a failure GDAL only
/// reports (not in the return value) counts too, and a failure to write the file (no space
/// left, an I/O or permission error) is [`RasterError::Io`].
fn checked<T, E: std::fmt::Display>(
    path: &Path,
    call: impl FnOnce() -> std::result::Result<T, E>,
) -> Result<T> {
    let what = format!("writing {}", path.display());
    let capture = gdalx::ErrorCapture::start();
    let written = call();
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
    written.map_err(|e| RasterError::gdal(&what, e))
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

/// Sets the nodata (NaN), description and metadata of the bands of a raster written from `r`
/// (its template will do: only its bands and times are read): band `t * B + b + 1` is band `b`
/// at time `t`, described by the band name (and the time when there are several).
fn describe_raster_bands(ds: &Dataset, r: &Raster, what: &str) -> Result<()> {
    let err = |e: gdal::errors::GdalError| RasterError::gdal(what, e);
    let (nt, nb) = (r.data.len_of(Axis(0)), r.data.len_of(Axis(1)));
    for t in 0..nt {
        for b in 0..nb {
            let mut band = ds.rasterband(t * nb + b + 1).map_err(err)?;
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
        }
    }
    Ok(())
}

/// Writes a raster as Float32 with NaN nodata: one band per (time, band), described by the band
/// name (and the time when there are several).
pub(crate) fn write_raster(r: &Raster, path: &Path, cog: bool) -> Result<()> {
    let what = format!("writing {}", path.display());
    let err = |e: gdal::errors::GdalError| RasterError::gdal(&what, e);
    let (nt, nb, h, w) = r.data.dim();
    let mut mem = mem_on_grid::<f32>(&r.grid, (nt * nb).max(1), &what)?;
    describe_raster_bands(&mem, r, &what)?;
    for t in 0..nt {
        for b in 0..nb {
            let mut band = mem.rasterband(t * nb + b + 1).map_err(err)?;
            let plane: Vec<f32> = r.data.slice(s![t, b, .., ..]).iter().copied().collect();
            band.write((0, 0), (w, h), &mut Buffer::new((w, h), plane))
                .map_err(err)?;
        }
    }
    mem.flush_cache().map_err(err)?;
    copy_out(&mem, path, cog, "3")
}

/// How a class map is stored: Byte when every class id is below 255 (nodata 255 unless the
/// map's own nodata fits), else UInt16 with the map's nodata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LabelsLayout {
    /// Byte rather than UInt16.
    byte: bool,
    /// The nodata value in the file.
    nodata: u16,
}

impl LabelsLayout {
    /// The layout of a class map whose largest class id is `max_class` and whose nodata is
    /// `nodata`.
    fn new(max_class: u16, nodata: u16) -> Self {
        let byte = max_class < 255;
        LabelsLayout {
            byte,
            nodata: if byte && nodata > 255 { 255 } else { nodata },
        }
    }
}

/// Sets a class map band's nodata and description.
fn describe_labels_band(band: &mut RasterBand, layout: LabelsLayout, what: &str) -> Result<()> {
    let err = |e: gdal::errors::GdalError| RasterError::gdal(what, e);
    band.set_no_data_value(Some(layout.nodata as f64))
        .map_err(err)?;
    band.set_description("class").map_err(err)
}

/// Sets a class map band's colour table (one entry per id up to `max_class`, and nodata,
/// transparent, for Byte) and its category names.
fn style_labels_band(
    band: &mut RasterBand,
    layout: LabelsLayout,
    max_class: u16,
    classes: &[ClassInfo],
    what: &str,
) -> Result<()> {
    let err = |e: gdal::errors::GdalError| RasterError::gdal(what, e);
    let entries = if layout.byte {
        max_class.max(layout.nodata) as usize + 1
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
    gdalx::set_category_names(band, &names).map_err(|m| RasterError::Gdal {
        context: what.to_string(),
        message: m,
    })
}

/// The largest class id in `classes`, 0 without any.
fn largest(classes: &[ClassInfo]) -> u16 {
    classes.iter().map(|c| c.id).max().unwrap_or(0)
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
        .max(largest(classes));
    let (w, h) = (l.grid.width, l.grid.height);
    let layout = LabelsLayout::new(max_class, l.nodata);
    let mut mem = if layout.byte {
        let mem = mem_on_grid::<u8>(&l.grid, 1, &what)?;
        let data: Vec<u8> = l
            .data
            .iter()
            .map(|&v| {
                if v == l.nodata {
                    layout.nodata as u8
                } else {
                    v as u8
                }
            })
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
        describe_labels_band(&mut band, layout, &what)?;
        style_labels_band(&mut band, layout, max_class, classes, &what)?;
    }
    mem.flush_cache().map_err(err)?;
    copy_out(&mem, path, cog, "1")
}

/// A tiled GeoTIFF written window by window from several threads: the dataset is behind a lock,
/// so GDAL sees one call at a time, and the blocks GDAL caches are compressed into the file as
/// they are evicted or when it is closed.
struct WindowedTiff {
    ds: Mutex<Dataset>,
    path: PathBuf,
}

impl WindowedTiff {
    /// Creates an empty GeoTIFF of `bands` bands of `T` on `grid` at `path` with the GTiff
    /// driver's creation `options` ([`staged_options`]).
    fn create<T: GdalType>(
        path: &Path,
        grid: &Grid,
        bands: usize,
        options: &[String],
    ) -> Result<Self> {
        let what = format!("writing {}", path.display());
        let driver =
            DriverManager::get_driver_by_name("GTiff").map_err(|e| RasterError::gdal(&what, e))?;
        let options = RasterCreationOptions::from_iter(options.iter().cloned());
        let mut ds = checked(path, || {
            driver.create_with_band_type_with_options::<T, _>(
                path,
                grid.width,
                grid.height,
                bands,
                &options,
            )
        })?;
        georeference(&mut ds, grid, &what)?;
        Ok(WindowedTiff {
            ds: Mutex::new(ds),
            path: path.to_path_buf(),
        })
    }

    /// What is being done, for messages.
    fn what(&self) -> String {
        format!("writing {}", self.path.display())
    }

    /// Runs `f` on the dataset, alone.
    fn with<R>(&self, f: impl FnOnce(&mut Dataset) -> Result<R>) -> Result<R> {
        let mut ds = self.ds.lock().map_err(|_| RasterError::Gdal {
            context: self.what(),
            message: "a thread writing it panicked".into(),
        })?;
        f(&mut ds)
    }

    /// Runs `f` on band `index` (from 1).
    fn with_band<R>(
        &self,
        index: usize,
        f: impl FnOnce(&mut RasterBand) -> Result<R>,
    ) -> Result<R> {
        self.with(|ds| {
            let mut band = ds
                .rasterband(index)
                .map_err(|e| RasterError::gdal(self.what(), e))?;
            f(&mut band)
        })
    }

    /// Writes `data`, `bands` planes one after the other (bands 1 to `bands`), each
    /// `window.height` rows of `window.width` values, at the window's place, every band in one
    /// call ([`gdalx::write_bands`]).
    fn write_window<T: GdalType + Copy>(
        &self,
        window: Window,
        bands: usize,
        data: &[T],
    ) -> Result<()> {
        let size = (window.width, window.height);
        let offset = (window.col, window.row);
        self.with(|ds| {
            checked(&self.path, || {
                gdalx::write_bands(ds, offset, size, bands, data)
            })
        })
    }

    /// Writes the blocks still cached and closes the file.
    fn finish(self) -> Result<()> {
        let what = self.what();
        let ds = self.ds.into_inner().map_err(|_| RasterError::Gdal {
            context: what,
            message: "a thread writing it panicked".into(),
        })?;
        checked(&self.path, || ds.close())
    }
}

/// The temporary GeoTIFF a windowed COG at `path` is copied from: beside it, named as it with
/// `.src.tif` added.
pub(crate) fn cog_source(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".src.tif");
    PathBuf::from(s)
}

/// Removes [`cog_source`]`(path)` and its `.aux.xml` sidecar, if they are there.
pub(crate) fn remove_cog_source(path: &Path) {
    let src = cog_source(path);
    let _ = std::fs::remove_file(super::aux(&src));
    let _ = std::fs::remove_file(&src);
}

/// Creation options of the GeoTIFF a windowed value is written into: [`gtiff_options`] with
/// `predictor`, BigTIFF when its pixels uncompressed could pass 4 GiB, and for the temporary
/// GeoTIFF a COG is copied from (`cog`) the fastest DEFLATE level: the COG driver compresses
/// the pixels again, so a smaller temporary file is not worth the time.
fn staged_options(predictor: &str, cog: bool) -> Vec<String> {
    let mut options = gtiff_options(predictor);
    options.push("BIGTIFF=IF_SAFER".to_string());
    if cog {
        options.push("ZLEVEL=1".to_string());
    }
    options
}

/// Writes `path` through `fill`, which writes a tiled GeoTIFF at the path and with the creation
/// options it is given ([`staged_options`]): `path` itself for a GeoTIFF; for a COG,
/// [`cog_source`]`(path)`, which the COG driver then copies into `path` (with `predictor`) and
/// which is removed afterwards, also when anything failed.
fn through_source<T>(
    path: &Path,
    cog: bool,
    predictor: &str,
    fill: impl FnOnce(&Path, &[String]) -> Result<T>,
) -> Result<T> {
    let options = staged_options(predictor, cog);
    if !cog {
        return fill(path, &options);
    }
    let src = cog_source(path);
    let result = fill(&src, &options).and_then(|out| {
        let ds = Dataset::open_ex(
            &src,
            DatasetOptions {
                open_flags: GdalOpenFlags::GDAL_OF_RASTER
                    | GdalOpenFlags::GDAL_OF_READONLY
                    | GdalOpenFlags::GDAL_OF_VERBOSE_ERROR,
                allowed_drivers: Some(&[gdalx::GTIFF]),
                ..Default::default()
            },
        )
        .map_err(|e| RasterError::gdal(format!("reading {}", src.display()), e))?;
        copy_out(&ds, path, true, predictor)?;
        Ok(out)
    });
    remove_cog_source(path);
    result
}

/// Computes every window of `d` on the run's threads and folds each into an accumulator with
/// `step` (as [`Deferred::fold`]); a failure of `step` stops the other workers and is returned
/// as it is, one of computing a window as [`RasterError::Node`].
fn fold_writing<A: Send>(
    ctx: &RunContext,
    d: &Deferred,
    init: impl Fn() -> A + Sync,
    step: impl Fn(&mut A, Window, Value) -> Result<()> + Sync,
) -> Result<Vec<A>> {
    let failure: Mutex<Option<RasterError>> = Mutex::new(None);
    let folded = d.fold(ctx, init, |acc, w, v| {
        step(acc, w, v).map_err(|e| {
            if let Ok(mut slot) = failure.lock() {
                slot.get_or_insert(e);
            }
            // The other workers stop at their next window; the failure itself is in `failure`.
            NodeError::Cancelled
        })
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    folded.map_err(RasterError::Node)
}

/// A window that is not what the deferred value's template says.
fn not_fitting(d: &Deferred, w: Window, got: &Value) -> RasterError {
    RasterError::Node(NodeError::Failed(format!(
        "node `{}` gave a {} for window {} that does not fit {}",
        d.expr.node_id,
        got.value_type(),
        describe_window(w),
        d.describe()
    )))
}

/// `WxH+col+row`.
fn describe_window(w: Window) -> String {
    format!("{}x{}+{}+{}", w.width, w.height, w.col, w.row)
}

/// The pixels of an array in its logical (row-major) order, copied only when they are not laid
/// out that way already.
fn contiguous<'a, T: Clone, S: ndarray::Data<Elem = T>, D: ndarray::Dimension>(
    a: &'a ndarray::ArrayBase<S, D>,
) -> std::borrow::Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

/// Writes a windowed raster as [`write_raster`] writes it whole, window by window: never more
/// than the run's threads' windows in memory, and for a COG a temporary GeoTIFF on disk.
pub(crate) fn write_deferred_raster(
    ctx: &RunContext,
    d: &Deferred,
    path: &Path,
    cog: bool,
) -> Result<()> {
    let Value::Raster(t) = d.template.as_ref() else {
        return Err(RasterError::InvalidData(format!(
            "write: {} is not a raster",
            d.describe()
        )));
    };
    let (nt, nb) = (t.data.len_of(Axis(0)), t.data.len_of(Axis(1)));
    through_source(path, cog, "3", |file, options| {
        let tiff = WindowedTiff::create::<f32>(file, d.grid(), (nt * nb).max(1), options)?;
        let what = tiff.what();
        tiff.with(|ds| describe_raster_bands(ds, t, &what))?;
        fold_writing(
            ctx,
            d,
            || (),
            |(), w, v| {
                let Value::Raster(r) = &v else {
                    return Err(not_fitting(d, w, &v));
                };
                if r.data.dim() != (nt, nb, w.height, w.width) {
                    return Err(not_fitting(d, w, &v));
                }
                if nt * nb == 0 {
                    return Ok(());
                }
                // Time by time, band by band: the file's bands in order.
                tiff.write_window(w, nt * nb, &contiguous(&r.data))
            },
        )?;
        tiff.finish()
    })
}

/// Writes a windowed class map as [`write_labels`] writes it whole, window by window. Byte or
/// UInt16 is decided before any window is computed, from the classes `classes_up_to(None)`
/// gives (the template's, extended by the names): a window holding a class id that does not fit
/// is refused. The colour table and category names are made once every window is in, from
/// `classes_up_to(Some(largest id seen))`, as from the whole map; those classes are returned.
pub(crate) fn write_deferred_labels(
    ctx: &RunContext,
    d: &Deferred,
    path: &Path,
    cog: bool,
    classes_up_to: impl Fn(Option<u16>) -> Vec<ClassInfo>,
) -> Result<Vec<ClassInfo>> {
    let Value::Labels(t) = d.template.as_ref() else {
        return Err(RasterError::InvalidData(format!(
            "write: {} is not a class map",
            d.describe()
        )));
    };
    let planned = largest(&classes_up_to(None));
    let layout = LabelsLayout::new(planned, t.nodata);
    let nodata = t.nodata;
    through_source(path, cog, "1", |file, options| {
        let tiff = if layout.byte {
            WindowedTiff::create::<u8>(file, d.grid(), 1, options)?
        } else {
            WindowedTiff::create::<u16>(file, d.grid(), 1, options)?
        };
        let what = tiff.what();
        tiff.with_band(1, |band| describe_labels_band(band, layout, &what))?;
        let seen = fold_writing(
            ctx,
            d,
            || None::<u16>,
            |max, w, v| {
                let Value::Labels(l) = &v else {
                    return Err(not_fitting(d, w, &v));
                };
                if l.data.dim() != (w.height, w.width) {
                    return Err(not_fitting(d, w, &v));
                }
                let here = l.data.iter().copied().filter(|&v| v != nodata).max();
                *max = (*max).max(here);
                if !layout.byte {
                    return tiff.write_window(w, 1, &contiguous(&l.data));
                }
                if let Some(id) = here.filter(|&id| id >= 255) {
                    return Err(RasterError::InvalidData(format!(
                        "write: window {} of the class map holds class id {id}, but the map \
                         is written as Byte, chosen before its windows were computed from its \
                         classes (ids up to {planned}); give `class_names` for every id up to \
                         {id} to have it written as UInt16",
                        describe_window(w)
                    )));
                }
                let plane: Vec<u8> = l
                    .data
                    .iter()
                    .map(|&v| {
                        if v == nodata {
                            layout.nodata as u8
                        } else {
                            v as u8
                        }
                    })
                    .collect();
                tiff.write_window(w, 1, &plane)
            },
        )?
        .into_iter()
        .flatten()
        .max();
        let classes = classes_up_to(seen);
        let max_class = seen.unwrap_or(0).max(largest(&classes));
        tiff.with_band(1, |band| {
            style_labels_band(band, layout, max_class, &classes, &what)
        })?;
        tiff.finish()?;
        Ok(classes)
    })
}
