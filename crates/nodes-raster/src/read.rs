//! Reading one asset onto the target grid: a plain windowed read when the asset's pixels line up
//! with the grid, a GDAL warp otherwise.

use flow_core::Grid;
use gdal::Dataset;

use crate::gdalx::{self, ErrorCapture};
use crate::stac::AssetRef;

/// Resampling methods of `stack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resampling {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear.
    Bilinear,
    /// Cubic convolution.
    Cubic,
    /// Mean of the contributing pixels.
    Average,
}

impl Resampling {
    /// The names accepted in recipes.
    pub const NAMES: [&'static str; 4] = ["nearest", "bilinear", "cubic", "average"];

    /// Parses a recipe name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "nearest" => Resampling::Nearest,
            "bilinear" => Resampling::Bilinear,
            "cubic" => Resampling::Cubic,
            "average" => Resampling::Average,
            _ => return None,
        })
    }

    fn gdalwarp_name(self) -> &'static str {
        match self {
            Resampling::Nearest => "near",
            Resampling::Bilinear => "bilinear",
            Resampling::Cubic => "cubic",
            Resampling::Average => "average",
        }
    }
}

/// How an asset was read (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadPath {
    /// A windowed RasterIO of aligned pixels.
    Window,
    /// A GDAL warp onto the grid.
    Warp,
}

/// The pixel offset of the target grid inside the source grid, when both are north-up with the
/// same pixel size and the offset is a whole number of pixels.
fn aligned_offset(src: &[f64; 6], dst: &[f64; 6]) -> Option<(i64, i64)> {
    if src[2] != 0.0 || src[4] != 0.0 || dst[2] != 0.0 || dst[4] != 0.0 {
        return None;
    }
    let tol = 1e-6 * dst[1].abs();
    if (src[1] - dst[1]).abs() > tol || (src[5] - dst[5]).abs() > tol {
        return None;
    }
    let col = (dst[0] - src[0]) / src[1];
    let row = (dst[3] - src[3]) / src[5];
    let (ci, ri) = (col.round(), row.round());
    if (col - ci).abs() > 1e-6 || (row - ri).abs() > 1e-6 {
        return None;
    }
    Some((ci as i64, ri as i64))
}

fn same_crs(ds: &Dataset, epsg: u32, stac_epsg: Option<u32>) -> bool {
    match ds.spatial_ref() {
        Ok(mut srs) => {
            if let Ok(code) = srs.auth_code() {
                return code as u32 == epsg;
            }
            if srs.auto_identify_epsg().is_ok() {
                if let Ok(code) = srs.auth_code() {
                    return code as u32 == epsg;
                }
            }
            crate::grid::srs(epsg).map(|t| t == srs).unwrap_or(false)
        }
        // No CRS in the file: trust the STAC metadata.
        Err(_) => stac_epsg == Some(epsg),
    }
}

/// Reads `asset` onto `grid` (whose CRS is `EPSG:epsg`) into `out` (row-major, `grid.len()`
/// values, pre-filled with NaN): raw values, nodata as NaN, then `value * scale + offset`.
///
/// # Errors
/// GDAL's message when the file cannot be opened or any GDAL failure happens while reading.
pub(crate) fn read_asset(
    asset: &AssetRef,
    grid: &Grid,
    epsg: u32,
    resampling: Resampling,
    out: &mut [f32],
) -> Result<ReadPath, String> {
    let capture = ErrorCapture::start();
    gdalx::set_http_options();
    let result = read_inner(asset, grid, epsg, resampling, out);
    // A failure reported by GDAL counts even when the call said it succeeded.
    let path = match (result, capture.failure()) {
        (Err(e), _) => return Err(e),
        (Ok(_), Some(msg)) => return Err(msg),
        (Ok(p), None) => p,
    };
    if asset.scale != 1.0 || asset.offset != 0.0 {
        let (scale, offset) = (asset.scale as f32, asset.offset as f32);
        for v in out.iter_mut() {
            *v = *v * scale + offset;
        }
    }
    Ok(path)
}

fn read_inner(
    asset: &AssetRef,
    grid: &Grid,
    epsg: u32,
    resampling: Resampling,
    out: &mut [f32],
) -> Result<ReadPath, String> {
    let path = gdalx::gdal_path(&asset.href);
    let ds = gdalx::open_raster(&path).map_err(|e| e.to_string())?;
    if ds.raster_count() < 1 {
        return Err("the file has no raster band".into());
    }
    let gt = ds
        .geo_transform()
        .map_err(|e| format!("no geotransform: {e}"))?;
    let band = ds.rasterband(1).map_err(|e| e.to_string())?;
    let nodata = band.no_data_value().or(asset.nodata);
    if same_crs(&ds, epsg, asset.epsg) {
        if let Some((col_off, row_off)) = aligned_offset(&gt, &grid.transform) {
            window_read(&band, (col_off, row_off), grid, nodata, out)?;
            return Ok(ReadPath::Window);
        }
    }
    warp_read(&ds, asset, grid, resampling, nodata, out)?;
    Ok(ReadPath::Warp)
}

fn window_read(
    band: &gdal::raster::RasterBand,
    (col_off, row_off): (i64, i64),
    grid: &Grid,
    nodata: Option<f64>,
    out: &mut [f32],
) -> Result<(), String> {
    let (sw, sh) = band.size();
    let (w, h) = (grid.width as i64, grid.height as i64);
    // Source columns col_off .. col_off + w, clipped to the file.
    let (c0, c1) = (col_off.max(0), (col_off + w).min(sw as i64));
    let (r0, r1) = (row_off.max(0), (row_off + h).min(sh as i64));
    if c0 >= c1 || r0 >= r1 {
        return Ok(()); // no overlap: all nodata
    }
    let (nw, nh) = ((c1 - c0) as usize, (r1 - r0) as usize);
    let (dc, dr) = ((c0 - col_off) as usize, (r0 - row_off) as usize);
    if nw == grid.width && nh == grid.height {
        band.read_into_slice::<f32>((c0 as isize, r0 as isize), (nw, nh), (nw, nh), out, None)
            .map_err(|e| e.to_string())?;
    } else {
        let mut buf = vec![0f32; nw * nh];
        band.read_into_slice::<f32>(
            (c0 as isize, r0 as isize),
            (nw, nh),
            (nw, nh),
            &mut buf,
            None,
        )
        .map_err(|e| e.to_string())?;
        for (r, row) in buf.chunks_exact(nw).enumerate() {
            let start = (dr + r) * grid.width + dc;
            out[start..start + nw].copy_from_slice(row);
        }
    }
    if let Some(nd) = nodata {
        let nd = nd as f32;
        for v in out.iter_mut() {
            if *v == nd {
                *v = f32::NAN;
            }
        }
    }
    Ok(())
}

fn warp_read(
    ds: &Dataset,
    asset: &AssetRef,
    grid: &Grid,
    resampling: Resampling,
    nodata: Option<f64>,
    out: &mut [f32],
) -> Result<(), String> {
    let (minx, miny, maxx, maxy) = grid.bounds();
    let mut args: Vec<String> = vec![
        "-of".into(),
        "MEM".into(),
        "-t_srs".into(),
        grid.crs.clone(),
        "-te".into(),
    ];
    args.extend([minx, miny, maxx, maxy].iter().map(|v| format!("{v}")));
    args.extend([
        "-ts".into(),
        grid.width.to_string(),
        grid.height.to_string(),
    ]);
    args.extend([
        "-r".into(),
        resampling.gdalwarp_name().into(),
        "-ot".into(),
        "Float32".into(),
    ]);
    args.extend(["-dstnodata".into(), "nan".into()]);
    if ds.spatial_ref().is_err() {
        if let Some(e) = asset.epsg {
            args.extend(["-s_srs".into(), format!("EPSG:{e}")]);
        }
    }
    if let Some(nd) = nodata {
        args.extend(["-srcnodata".into(), format!("{nd}")]);
    }
    let warped = gdalx::warp_to_mem(ds, &args)?;
    let band = warped.rasterband(1).map_err(|e| e.to_string())?;
    band.read_into_slice::<f32>(
        (0, 0),
        (grid.width, grid.height),
        (grid.width, grid.height),
        out,
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_needs_same_pixel_size_and_whole_offsets() {
        let src = [584000.0, 10.0, 0.0, 5034000.0, 0.0, -10.0];
        assert_eq!(
            aligned_offset(&src, &[585080.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]),
            Some((108, 105))
        );
        assert_eq!(
            aligned_offset(&src, &[583000.0, 10.0, 0.0, 5035000.0, 0.0, -10.0]),
            Some((-100, -100))
        );
        assert_eq!(
            aligned_offset(&src, &[585085.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]),
            None
        );
        assert_eq!(
            aligned_offset(&src, &[585080.0, 20.0, 0.0, 5032950.0, 0.0, -20.0]),
            None
        );
    }
}
