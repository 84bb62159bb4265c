//! A GeoTIFF / COG read as a [`Raster`] or as a class map ([`Labels`]), on its own grid or
//! warped onto another, through the reader of `stack` ([`read_asset`]: block checks, masks,
//! nodata, GDAL's warp).

use std::path::Path;

use flow_core::{BandInfo, ClassInfo, Grid, Labels, NodeError, Raster, Value};
use gdal::raster::RasterBand;
use gdal::{Dataset, Metadata};
use ndarray::Array2;

use crate::alloc;
use crate::gdalx::{self, ErrorCapture, HttpOptions};
use crate::read::{not_allowed, read_asset, ReadError, ReadOptions, Resampling};
use crate::stac::AssetRef;

/// How the file is read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Options<'a> {
    /// As a class map (band `band`), rather than a raster of every band.
    pub labels: bool,
    /// The band of a class map, from 1.
    pub band: usize,
    /// Names of a class map's classes by id, before the file's own.
    pub class_names: Option<&'a [String]>,
    /// Resampling onto another grid (nearest for a class map).
    pub resampling: Resampling,
    /// The GDAL drivers the file may be opened with.
    pub drivers: &'a [String],
    /// GDAL threads of the read.
    pub threads: usize,
}

/// What the file says of one band.
#[derive(Debug, Clone, Default)]
struct BandMeta {
    description: String,
    common_name: Option<String>,
    wavelength: Option<f64>,
    datetime: Option<String>,
}

/// What is known of the file before its pixels are read.
#[derive(Debug, Clone)]
struct FileInfo {
    grid: Option<Grid>,
    epsg: Option<u32>,
    transform: [f64; 6],
    size: (usize, usize),
    bands: Vec<BandMeta>,
    /// Of the class band: its nodata value, category names and colour table (RGBA per entry).
    nodata: Option<f64>,
    names: Vec<String>,
    colours: Vec<[i16; 4]>,
}

/// An error about the file at `path` that is there but cannot be used (exit 3).
fn unusable(path: &Path, message: impl std::fmt::Display) -> NodeError {
    NodeError::InvalidData(format!("read: {}: {message}", path.display()))
}

/// The EPSG code of the dataset's CRS, if it has one.
fn epsg_of(ds: &Dataset) -> Option<u32> {
    let mut srs = ds.spatial_ref().ok()?;
    let code = srs.auth_code().ok().or_else(|| {
        srs.auto_identify_epsg()
            .ok()
            .and_then(|_| srs.auth_code().ok())
    });
    code.and_then(|c| u32::try_from(c).ok())
}

fn band_meta(band: &RasterBand) -> BandMeta {
    let item = |key: &str| band.metadata_item(key, "").filter(|v| !v.is_empty());
    BandMeta {
        description: band.description().unwrap_or_default(),
        common_name: item("common_name"),
        wavelength: item("wavelength").and_then(|w| w.parse().ok()),
        datetime: item("datetime"),
    }
}

/// Opens the file with the allowed drivers and reads its grid, band descriptions and metadata,
/// and (for a class map) the class band's nodata, category names and colour table.
fn file_info(path: &Path, options: &Options) -> Result<FileInfo, NodeError> {
    let gdal_path = path.to_string_lossy().into_owned();
    let drivers: Vec<&str> = options.drivers.iter().map(String::as_str).collect();
    let _capture = ErrorCapture::start();
    // A local file's sidecars count: category names and colours live in `<file>.aux.xml`
    // (a thread that read remote assets before may have turned directory listing off).
    let _ = gdal::config::set_thread_local_config_option("GDAL_DISABLE_READDIR_ON_OPEN", "FALSE");
    let ds = gdalx::step(
        || "opening the file".into(),
        gdalx::open_raster(&gdal_path, &drivers),
    )
    .map_err(|failed| match not_allowed(&gdal_path, &drivers) {
        Some(why) => unusable(path, format!("{failed}; {why}")),
        None => unusable(path, failed),
    })?;
    let count = ds.raster_count();
    if count < 1 {
        return Err(unusable(path, "the file has no raster band"));
    }
    let transform = gdalx::step(|| "no geotransform".into(), ds.geo_transform())
        .map_err(|e| unusable(path, format!("{e}: the file is not georeferenced")))?;
    let epsg = epsg_of(&ds);
    // Probing for an EPSG code may report failures that only mean "no code".
    let _ = gdalx::take_failures();
    let size = ds.raster_size();
    let grid = epsg.map(|e| Grid {
        crs: format!("EPSG:{e}"),
        transform,
        width: size.0,
        height: size.1,
    });
    let mut bands = Vec::with_capacity(count);
    for i in 1..=count {
        let band = gdalx::step(|| format!("opening band {i}"), ds.rasterband(i))
            .map_err(|e| unusable(path, e))?;
        bands.push(band_meta(&band));
    }
    let (mut nodata, mut names, mut colours) = (None, Vec::new(), Vec::new());
    if options.labels {
        if options.band > count {
            return Err(unusable(
                path,
                format!(
                    "the file has {count} band(s), so no band {} of class ids",
                    options.band
                ),
            ));
        }
        let band = gdalx::step(
            || format!("opening band {}", options.band),
            ds.rasterband(options.band),
        )
        .map_err(|e| unusable(path, e))?;
        nodata = band.no_data_value();
        names = gdalx::category_names(&band);
        let table = band.color_table();
        if let Some(table) = &table {
            colours = (0..table.entry_count())
                .map(|i| {
                    table
                        .entry_as_rgb(i)
                        .map_or([0, 0, 0, 0], |e| [e.r, e.g, e.b, e.a])
                })
                .collect();
        }
    }
    let _ = gdalx::take_failures();
    Ok(FileInfo {
        grid,
        epsg,
        transform,
        size,
        bands,
        nodata,
        names,
        colours,
    })
}

/// Reads band `band` of the file onto `grid` (CRS `EPSG:epsg`) into `out`.
fn read_band(
    path: &Path,
    info: &FileInfo,
    (grid, epsg): (&Grid, u32),
    band: usize,
    options: &Options,
    out: &mut [f32],
) -> Result<(), NodeError> {
    let asset = AssetRef {
        href: path.to_string_lossy().into_owned(),
        epsg: info.epsg,
        transform: Some(info.transform),
        shape: Some((info.size.1, info.size.0)),
        scale: 1.0,
        offset: 0.0,
        nodata: None,
        band: BandInfo::default(),
        checksum: None,
        signer: None,
    };
    let drivers: Vec<&str> = options.drivers.iter().map(String::as_str).collect();
    let read = ReadOptions {
        band,
        resampling: options.resampling,
        gdal_threads: options.threads,
        http: HttpOptions::DEFAULT,
        drivers: &drivers,
    };
    read_asset(&asset, grid, epsg, read, out).map_err(|e| match e {
        ReadError::Data(m) | ReadError::Forbidden(m) | ReadError::Remote(m) => unusable(path, m),
    })?;
    Ok(())
}

/// Reads the GeoTIFF at `path` as a [`Raster`] (every band) or, with `options.labels`, as a
/// class map: on its own grid, or warped onto `like`.
///
/// # Errors
/// Exit 3 (naming the path) for a file no allowed driver opens, one without a CRS of an EPSG
/// code, a damaged block, or a class id that is not a whole number of 0..=65535.
pub(super) fn read(
    path: &Path,
    like: Option<&Grid>,
    options: &Options,
) -> Result<Value, NodeError> {
    let info = file_info(path, options)?;
    let grid = match (like, &info.grid) {
        (Some(g), _) => g.clone(),
        (None, Some(g)) => g.clone(),
        (None, None) => {
            return Err(unusable(
                path,
                "the file's CRS has no EPSG code, which flow names grids by",
            ))
        }
    };
    let epsg = grid.epsg().ok_or_else(|| NodeError::Input {
        port: "like".into(),
        message: format!(
            "its grid's CRS is not an EPSG code ({}); the file cannot be warped onto it",
            grid.crs
        ),
    })?;
    if info.epsg.is_none() && like.is_some() {
        return Err(unusable(
            path,
            "the file's CRS has no EPSG code, so it cannot be warped",
        ));
    }
    tracing::debug!(file = %path.display(), width = grid.width, height = grid.height, "read");
    if options.labels {
        labels(path, &info, (&grid, epsg), options).map(Value::Labels)
    } else {
        raster(path, &info, (&grid, epsg), options).map(Value::Raster)
    }
}

/// The time steps of a file's bands and the number of bands per step: the distinct `datetime`
/// metadata of the bands in order when every band has one and they come in whole steps (band
/// `t * B + b` at time `t`, as `write` lays them out), else one step labelled `unknown`.
fn time_steps(bands: &[BandMeta]) -> (Vec<String>, usize) {
    let n = bands.len();
    let dates: Option<Vec<&str>> = bands.iter().map(|b| b.datetime.as_deref()).collect();
    if let Some(dates) = dates {
        let mut times: Vec<&str> = Vec::new();
        for d in &dates {
            if !times.contains(d) {
                times.push(d);
            }
        }
        let nt = times.len();
        if nt > 0 && n.is_multiple_of(nt) {
            let per = n / nt;
            if dates.iter().enumerate().all(|(i, d)| *d == times[i / per]) {
                return (times.iter().map(|t| t.to_string()).collect(), per);
            }
        }
    }
    (vec!["unknown".to_string()], n)
}

fn raster(
    path: &Path,
    info: &FileInfo,
    (grid, epsg): (&Grid, u32),
    options: &Options,
) -> Result<Raster, NodeError> {
    let (times, nb) = time_steps(&info.bands);
    let nt = times.len();
    let mut data = alloc::array4((nt, nb, grid.height, grid.width), f32::NAN).map_err(|e| {
        unusable(
            path,
            format!(
                "its {} band(s) of {} x {} pixels (f32) {e}",
                info.bands.len(),
                grid.width,
                grid.height
            ),
        )
    })?;
    let plane = grid.len();
    let slice = data
        .as_slice_memory_order_mut()
        .ok_or_else(|| NodeError::Failed("read: the output array is not contiguous".into()))?;
    for (i, out) in slice.chunks_mut(plane.max(1)).enumerate().take(nt * nb) {
        read_band(path, info, (grid, epsg), i + 1, options, out)?;
    }
    let bands = info.bands[..nb]
        .iter()
        .enumerate()
        .map(|(b, m)| {
            // `write` describes a band of several time steps as "<time> <name>".
            let name = match (nt > 1, m.datetime.as_deref()) {
                (true, Some(t)) => m
                    .description
                    .strip_prefix(&format!("{t} "))
                    .unwrap_or(&m.description),
                _ => m.description.as_str(),
            };
            BandInfo {
                name: if name.is_empty() {
                    format!("b{}", b + 1)
                } else {
                    name.to_string()
                },
                common_name: m.common_name.clone(),
                wavelength: m.wavelength,
                ..BandInfo::default()
            }
        })
        .collect();
    Ok(Raster {
        data,
        grid: grid.clone(),
        bands,
        times,
    })
}

/// The class map's nodata: the file's when it is a u16, else 65535.
fn labels_nodata(file: Option<f64>) -> u16 {
    match file {
        Some(v) if v.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(&v) => v as u16,
        _ => u16::MAX,
    }
}

fn labels(
    path: &Path,
    info: &FileInfo,
    (grid, epsg): (&Grid, u32),
    options: &Options,
) -> Result<Labels, NodeError> {
    let mut values = alloc::filled(grid.len(), f32::NAN).map_err(|e| {
        unusable(
            path,
            format!(
                "the class map of {} x {} pixels {e}",
                grid.width, grid.height
            ),
        )
    })?;
    read_band(path, info, (grid, epsg), options.band, options, &mut values)?;
    let nodata = labels_nodata(info.nodata);
    let mut ids = Vec::with_capacity(values.len());
    let mut present = std::collections::BTreeSet::new();
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            ids.push(nodata);
            continue;
        }
        let whole = v.fract() == 0.0 && (0.0..=f32::from(u16::MAX)).contains(&v);
        if !whole || v as u16 == nodata {
            let (col, row) = (i % grid.width.max(1), i / grid.width.max(1));
            let why = if whole {
                format!(
                    "{nodata} marks pixels without a class in flow's class maps, and the file \
                     declares no other nodata value that fits in 0..=65535"
                )
            } else {
                "a class id is a whole number of 0..=65535".to_string()
            };
            return Err(unusable(
                path,
                format!(
                    "band {} holds {v} at pixel ({col}, {row}) of the grid read: {why}",
                    options.band
                ),
            ));
        }
        let id = v as u16;
        present.insert(id);
        ids.push(id);
    }
    drop(values);
    // Classes: every id present and every id the file names, named by `class_names` or the
    // file, coloured by the file, else `class N` and flow's palette.
    let named = info
        .names
        .iter()
        .enumerate()
        .filter(|(id, n)| !n.is_empty() && *id < usize::from(u16::MAX))
        .map(|(id, _)| id as u16);
    let listed: std::collections::BTreeSet<u16> = present
        .into_iter()
        .chain(named)
        .filter(|&id| id != nodata)
        .collect();
    let classes = listed
        .into_iter()
        .map(|id| {
            let given = options.class_names.and_then(|n| n.get(usize::from(id)));
            let name = given
                .or_else(|| info.names.get(usize::from(id)))
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| format!("class {id}"));
            let to_u8 = |c: i16| c.clamp(0, 255) as u8;
            let color = match info.colours.get(usize::from(id)) {
                Some(&[r, g, b, _]) => [to_u8(r), to_u8(g), to_u8(b)],
                None => crate::write::PALETTE[usize::from(id) % crate::write::PALETTE.len()],
            };
            ClassInfo { id, name, color }
        })
        .collect();
    let data = Array2::from_shape_vec((grid.height, grid.width), ids)
        .map_err(|e| NodeError::Failed(format!("read: {e}")))?;
    Ok(Labels {
        data,
        nodata,
        classes,
        grid: grid.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(description: &str, datetime: Option<&str>) -> BandMeta {
        BandMeta {
            description: description.into(),
            datetime: datetime.map(String::from),
            ..BandMeta::default()
        }
    }

    #[test]
    fn time_steps_follow_write_s_layout_or_are_one_unknown_step() {
        let two = [
            meta("t1 B04", Some("t1")),
            meta("t1 B08", Some("t1")),
            meta("t2 B04", Some("t2")),
            meta("t2 B08", Some("t2")),
        ];
        assert_eq!(time_steps(&two), (vec!["t1".into(), "t2".into()], 2));
        let one = [meta("B04", Some("t1")), meta("B08", Some("t1"))];
        assert_eq!(time_steps(&one), (vec!["t1".into()], 2));
        // Interleaved or partly dated bands are one step of every band.
        let mixed = [
            meta("a", Some("t1")),
            meta("b", Some("t2")),
            meta("c", Some("t1")),
        ];
        assert_eq!(time_steps(&mixed), (vec!["unknown".into()], 3));
        let undated = [meta("a", None), meta("b", Some("t1"))];
        assert_eq!(time_steps(&undated), (vec!["unknown".into()], 2));
    }

    #[test]
    fn a_class_map_keeps_a_u16_nodata_and_takes_65535_otherwise() {
        assert_eq!(labels_nodata(Some(255.0)), 255);
        assert_eq!(labels_nodata(Some(0.0)), 0);
        assert_eq!(labels_nodata(Some(-1.0)), u16::MAX);
        assert_eq!(labels_nodata(Some(f64::NAN)), u16::MAX);
        assert_eq!(labels_nodata(None), u16::MAX);
    }
}
