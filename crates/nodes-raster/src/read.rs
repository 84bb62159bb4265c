//! Reading one asset onto the target grid: a plain windowed read when the asset's pixels line up
//! with the grid, a GDAL warp otherwise.

use flow_core::Grid;
use gdal::Dataset;

use crate::gdalx::{self, ErrorCapture};
use crate::stac::AssetRef;

flow_core::param_enum! {
    /// Resampling methods of `stack`.
    pub enum Resampling {
        /// Nearest neighbour.
        Nearest = "nearest",
        /// Bilinear.
        Bilinear = "bilinear",
        /// Cubic convolution.
        Cubic = "cubic",
        /// Mean of the contributing pixels.
        Average = "average",
    }
}

impl Resampling {
    /// Parses a recipe name.
    pub fn parse(name: &str) -> Option<Self> {
        Resampling::ALL.iter().copied().find(|r| r.name() == name)
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
    /// A windowed RasterIO of coarser pixels whose size is a whole multiple of the grid's and
    /// whose corners lie on it, each replicated onto the grid (nearest resampling).
    Replicate,
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

/// Source pixels `factor` times the target pixel on each axis, with the source origin `offset`
/// whole target pixels from the target origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replication {
    factor: (i64, i64),
    offset: (i64, i64),
}

/// The replication of `src` pixels onto `dst` when both are north-up, the source pixel size is an
/// integer multiple (2 or more) of the target's on each axis and the source origin lies on the
/// target lattice. Then the source pixel containing a target pixel's centre — what GDAL's
/// nearest warp samples — is the one covering the whole target pixel.
fn replication(src: &[f64; 6], dst: &[f64; 6]) -> Option<Replication> {
    if src[2] != 0.0 || src[4] != 0.0 || dst[2] != 0.0 || dst[4] != 0.0 {
        return None;
    }
    let whole = |v: f64| {
        let r = v.round();
        ((v - r).abs() <= 1e-6).then_some(r as i64)
    };
    let fx = whole(src[1] / dst[1]).filter(|f| *f >= 2)?;
    let fy = whole(src[5] / dst[5]).filter(|f| *f >= 2)?;
    let ox = whole((src[0] - dst[0]) / dst[1])?;
    let oy = whole((src[3] - dst[3]) / dst[5])?;
    Some(Replication {
        factor: (fx, fy),
        offset: (ox, oy),
    })
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
/// `gdal_threads` is the GDAL_NUM_THREADS of this read (block decoding, warp kernel).
///
/// # Errors
/// GDAL's message when the file cannot be opened or any GDAL failure happens while reading.
pub(crate) fn read_asset(
    asset: &AssetRef,
    grid: &Grid,
    epsg: u32,
    resampling: Resampling,
    gdal_threads: usize,
    out: &mut [f32],
) -> Result<ReadPath, String> {
    gdalx::configure_process();
    let capture = ErrorCapture::start();
    gdalx::set_thread_options(gdal_threads);
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
    let validity = Validity::of(&band, asset)?;
    if same_crs(&ds, epsg, asset.epsg) {
        if let Some((col_off, row_off)) = aligned_offset(&gt, &grid.transform) {
            window_read(&band, &validity, (col_off, row_off), grid, out)?;
            return Ok(ReadPath::Window);
        }
        if resampling == Resampling::Nearest {
            if let Some(rep) = replication(&gt, &grid.transform) {
                replicate_read(&band, &validity, rep, grid, out)?;
                return Ok(ReadPath::Replicate);
            }
        }
    }
    warp_read(&ds, asset, grid, epsg, resampling, &validity, out)?;
    Ok(ReadPath::Warp)
}

/// How band 1 marks invalid pixels: its nodata value (else the asset's), and the file's mask
/// band when it has one that the nodata value does not express (an internal or sidecar mask,
/// per dataset or per band, or an alpha band).
struct Validity<'a> {
    nodata: Option<f64>,
    mask: Option<gdal::raster::RasterBand<'a>>,
}

impl<'a> Validity<'a> {
    fn of(band: &'a gdal::raster::RasterBand<'a>, asset: &AssetRef) -> Result<Self, String> {
        let flags = band.mask_flags().map_err(|e| e.to_string())?;
        let mask = if flags.is_all_valid() || flags.is_nodata() {
            None
        } else {
            Some(band.open_mask_band().map_err(|e| e.to_string())?)
        };
        Ok(Validity {
            nodata: band.no_data_value().or(asset.nodata),
            mask,
        })
    }

    /// Sets to NaN the invalid values of the `nw x nh` source window at column `c0`, row `r0`
    /// (`values` row-major): nodata values, and pixels the mask band marks 0.
    fn apply(
        &self,
        values: &mut [f32],
        (c0, r0): (i64, i64),
        (nw, nh): (usize, usize),
    ) -> Result<(), String> {
        if let Some(nd) = self.nodata {
            let nd = nd as f32;
            values
                .iter_mut()
                .filter(|v| **v == nd)
                .for_each(|v| *v = f32::NAN);
        }
        if let Some(mask) = &self.mask {
            let valid = read_window::<u8>(mask, (c0, r0), (nw, nh))
                .map_err(|e| format!("reading the mask band: {e}"))?;
            for (v, &m) in values.iter_mut().zip(&valid) {
                if m == 0 {
                    *v = f32::NAN;
                }
            }
        }
        Ok(())
    }
}

fn window_read(
    band: &gdal::raster::RasterBand,
    validity: &Validity,
    (col_off, row_off): (i64, i64),
    grid: &Grid,
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
        // The whole plane: straight into the output.
        band.read_into_slice::<f32>((c0 as isize, r0 as isize), (nw, nh), (nw, nh), out, None)
            .map_err(|e| e.to_string())?;
        validity.apply(out, (c0, r0), (nw, nh))?;
    } else {
        let mut buf = read_window::<f32>(band, (c0, r0), (nw, nh))?;
        validity.apply(&mut buf, (c0, r0), (nw, nh))?;
        for (r, row) in buf.chunks_exact(nw).enumerate() {
            let start = (dr + r) * grid.width + dc;
            out[start..start + nw].copy_from_slice(row);
        }
    }
    Ok(())
}

/// The `nw x nh` source pixels from column `c0`, row `r0`, row-major, with one RasterIO.
fn read_window<T: gdal::raster::GdalType + Copy + Default>(
    band: &gdal::raster::RasterBand,
    (c0, r0): (i64, i64),
    (nw, nh): (usize, usize),
) -> Result<Vec<T>, String> {
    let mut buf = vec![T::default(); nw * nh];
    band.read_into_slice::<T>(
        (c0 as isize, r0 as isize),
        (nw, nh),
        (nw, nh),
        &mut buf,
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Reads the source pixels covering `grid` with one RasterIO and replicates each onto the
/// `factor.0 x factor.1` target pixels it covers; target pixels outside the source are NaN.
fn replicate_read(
    band: &gdal::raster::RasterBand,
    validity: &Validity,
    rep: Replication,
    grid: &Grid,
    out: &mut [f32],
) -> Result<(), String> {
    let (sw, sh) = band.size();
    let ((fx, fy), (ox, oy)) = (rep.factor, rep.offset);
    let (w, h) = (grid.width as i64, grid.height as i64);
    // Target column c lies in source column (c - ox) div fx.
    let (c0, c1) = (
        (-ox).div_euclid(fx).max(0),
        (w - 1 - ox).div_euclid(fx).min(sw as i64 - 1),
    );
    let (r0, r1) = (
        (-oy).div_euclid(fy).max(0),
        (h - 1 - oy).div_euclid(fy).min(sh as i64 - 1),
    );
    out.fill(f32::NAN);
    if c0 > c1 || r0 > r1 {
        return Ok(()); // no overlap: all nodata
    }
    let (nw, nh) = ((c1 - c0 + 1) as usize, (r1 - r0 + 1) as usize);
    let mut buf = read_window::<f32>(band, (c0, r0), (nw, nh))?;
    validity.apply(&mut buf, (c0, r0), (nw, nh))?;
    // Target columns covered by source columns c0..=c1, and target rows by rows r0..=r1.
    let (tc0, tc1) = ((ox + c0 * fx).max(0), (ox + (c1 + 1) * fx).min(w));
    let (tr0, tr1) = ((oy + r0 * fy).max(0), (oy + (r1 + 1) * fy).min(h));
    let width = grid.width;
    let mut previous: Option<(i64, usize)> = None;
    for tr in tr0..tr1 {
        let sr = (tr - oy).div_euclid(fy);
        let start = tr as usize * width;
        match previous {
            // Same source row as the target row above: copy it.
            Some((prev_sr, prev_start)) if prev_sr == sr => {
                out.copy_within(
                    prev_start + tc0 as usize..prev_start + tc1 as usize,
                    start + tc0 as usize,
                );
            }
            _ => {
                let src_row = &buf[(sr - r0) as usize * nw..][..nw];
                let row = &mut out[start..start + width];
                for tc in tc0..tc1 {
                    row[tc as usize] = src_row[((tc - ox).div_euclid(fx) - c0) as usize];
                }
            }
        }
        previous = Some((sr, start));
    }
    Ok(())
}

/// GDAL's warp working memory per reader, in MB (`-wm`): the warp goes chunk by chunk within it.
const WARP_MEMORY_MB: u32 = 16;

fn warp_read(
    ds: &Dataset,
    asset: &AssetRef,
    grid: &Grid,
    epsg: u32,
    resampling: Resampling,
    validity: &Validity,
    out: &mut [f32],
) -> Result<(), String> {
    let wkt = crate::grid::srs(epsg)
        .map_err(|e| e.to_string())?
        .to_wkt()
        .map_err(|e| e.to_string())?;
    let mut args: Vec<String> = vec![
        "-r".into(),
        resampling.gdalwarp_name().into(),
        "-wm".into(),
        WARP_MEMORY_MB.to_string(),
        "-wo".into(),
        "INIT_DEST=NO_DATA".into(),
        "-dstnodata".into(),
        "nan".into(),
    ];
    if ds.spatial_ref().is_err() {
        if let Some(e) = asset.epsg {
            args.extend(["-s_srs".into(), format!("EPSG:{e}")]);
        }
    }
    // GDAL's warp uses either the nodata value or the file's mask band, not both: with a mask
    // band, the warp follows the mask and the nodata values are turned into NaN afterwards
    // (exact with nearest; with other kernels a nodata pixel outside the mask is averaged in).
    match (validity.nodata, &validity.mask) {
        (Some(_), Some(_)) => args.extend(["-srcnodata".into(), "None".into()]),
        (Some(nd), None) => args.extend(["-srcnodata".into(), format!("{nd}")]),
        (None, _) => {}
    }
    gdalx::warp_into(ds, &args, grid, &wkt, out)?;
    if let (Some(nd), Some(_)) = (validity.nodata, &validity.mask) {
        let nd = nd as f32;
        out.iter_mut()
            .filter(|v| **v == nd)
            .for_each(|v| *v = f32::NAN);
    }
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

    #[test]
    fn replication_needs_integer_factors_and_a_source_origin_on_the_grid() {
        let src = [583980.0, 20.0, 0.0, 5034000.0, 0.0, -20.0];
        assert_eq!(
            replication(&src, &[585080.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]),
            Some(Replication {
                factor: (2, 2),
                offset: (-110, -105)
            })
        );
        let src60 = [583980.0, 60.0, 0.0, 5034000.0, 0.0, -60.0];
        assert_eq!(
            replication(&src60, &[585060.0, 20.0, 0.0, 5034100.0, 0.0, -20.0]),
            Some(Replication {
                factor: (3, 3),
                offset: (-54, 5)
            })
        );
        // Same size (a window read), a coarser grid, a half-pixel shift, a non-integer factor.
        for dst in [
            [585080.0, 20.0, 0.0, 5032950.0, 0.0, -20.0],
            [585080.0, 40.0, 0.0, 5032950.0, 0.0, -40.0],
            [585085.0, 10.0, 0.0, 5032950.0, 0.0, -10.0],
            [585080.0, 8.0, 0.0, 5032952.0, 0.0, -8.0],
        ] {
            assert_eq!(replication(&src, &dst), None, "{dst:?}");
        }
    }

    fn scene_assets(dir: &std::path::Path, keys: &[&str]) -> Vec<AssetRef> {
        let items = crate::scene::generate_timberlea(dir).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&items).unwrap()).unwrap();
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let item = crate::stac::item_ref(&v["features"][0], &keys, items.parent().unwrap());
        item.assets.into_iter().map(Option::unwrap).collect()
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    /// The nearest warp of `asset` onto `grid`, as the read would do without replication.
    fn warped(asset: &AssetRef, grid: &Grid) -> Vec<f32> {
        let ds = gdalx::open_raster(&gdalx::gdal_path(&asset.href)).unwrap();
        let band = ds.rasterband(1).unwrap();
        let validity = Validity::of(&band, asset).unwrap();
        let mut out = vec![f32::NAN; grid.len()];
        warp_read(
            &ds,
            asset,
            grid,
            32618,
            Resampling::Nearest,
            &validity,
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn coarser_aligned_bands_are_replicated_exactly_like_the_nearest_warp() {
        let dir = tempfile::tempdir().unwrap();
        // B01 / B09 60 m, B05 / B8A 20 m, B04 10 m; the scene's origin is (583980, 5034000) and
        // its north-east corner (588420, 5034000).
        let assets = scene_assets(dir.path(), &["B01", "B05", "B8A", "B09", "B04"]);
        let grids = [
            // The notebook AOI at 10 m.
            Grid::north_up("EPSG:32618", 585080.0, 5032950.0, 10.0, 228, 207),
            // Odd offsets: target edges cut through source pixels.
            Grid::north_up("EPSG:32618", 585090.0, 5032970.0, 10.0, 131, 77),
            // Partly outside the scene (north-east corner), and wholly outside.
            Grid::north_up("EPSG:32618", 588300.0, 5034100.0, 10.0, 20, 20),
            Grid::north_up("EPSG:32618", 588150.0, 5034130.0, 10.0, 41, 33),
            Grid::north_up("EPSG:32618", 590000.0, 5034100.0, 10.0, 5, 5),
            // 60 m onto 20 m.
            Grid::north_up("EPSG:32618", 585060.0, 5034100.0, 20.0, 60, 50),
        ];
        let mut replicated = 0;
        for grid in &grids {
            for asset in &assets {
                let mut out = vec![f32::NAN; grid.len()];
                let path =
                    read_asset(asset, grid, 32618, Resampling::Nearest, 1, &mut out).unwrap();
                let native = asset.transform.unwrap()[1];
                let expected = if native == grid.transform[1] {
                    ReadPath::Window
                } else if native > grid.transform[1] {
                    ReadPath::Replicate
                } else {
                    ReadPath::Warp
                };
                assert_eq!(path, expected, "{} on {:?}", asset.href, grid.transform);
                if path == ReadPath::Replicate {
                    replicated += 1;
                    let mut want = warped(asset, grid);
                    let (scale, offset) = (asset.scale as f32, asset.offset as f32);
                    for v in want.iter_mut() {
                        *v = *v * scale + offset;
                    }
                    assert!(
                        same_bits(&out, &want),
                        "{} on {:?}: replication differs from the nearest warp",
                        asset.href,
                        grid.transform
                    );
                    if grid.transform[0] < 588000.0 {
                        assert!(out.iter().any(|v| v.is_finite()), "{}", asset.href);
                    }
                }
            }
        }
        assert!(replicated >= 20, "{replicated}");
        // Other resampling methods still warp.
        let grid = &grids[0];
        let mut out = vec![f32::NAN; grid.len()];
        let path = read_asset(&assets[1], grid, 32618, Resampling::Bilinear, 2, &mut out).unwrap();
        assert_eq!(path, ReadPath::Warp);
    }
    /// A 4 x 4 GeoTIFF at `pixel` m (values 1..=16) with, when `mask` is given, an internal
    /// per-dataset mask (0 = invalid) or an alpha band; without alpha, pixel 0 is nodata (0).
    fn masked_tiff(path: &std::path::Path, pixel: f64, mask: Option<&[u8]>, alpha: bool) {
        use gdal::raster::ColorInterpretation;
        let driver = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
        // GDAL takes an alpha band as the mask of UInt16 (or Byte) data only.
        let mut ds = if alpha {
            driver.create_with_band_type::<u16, _>(path, 4, 4, 2)
        } else {
            driver.create_with_band_type::<f32, _>(path, 4, 4, 1)
        }
        .unwrap();
        ds.set_geo_transform(&[585000.0, pixel, 0.0, 5033000.0, 0.0, -pixel])
            .unwrap();
        ds.set_spatial_ref(&crate::grid::srs(32618).unwrap())
            .unwrap();
        let mut values: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let mut band = ds.rasterband(1).unwrap();
        if !alpha {
            // (GDAL ignores an alpha band when the band has a nodata value.)
            values[0] = 0.0;
            band.set_no_data_value(Some(0.0)).unwrap();
        }
        let mut buf = gdal::raster::Buffer::new((4, 4), values);
        band.write((0, 0), (4, 4), &mut buf).unwrap();
        if let Some(m) = mask {
            if alpha {
                let mut a = ds.rasterband(2).unwrap();
                a.set_color_interpretation(ColorInterpretation::AlphaBand)
                    .unwrap();
                let v: Vec<u16> = m.iter().map(|&x| x as u16 * 65535).collect();
                let mut buf = gdal::raster::Buffer::new((4, 4), v);
                a.write((0, 0), (4, 4), &mut buf).unwrap();
            } else {
                let mut band = ds.rasterband(1).unwrap();
                // Inside the TIFF, as in COGs (flow reads without listing sidecar files).
                gdal::config::set_thread_local_config_option("GDAL_TIFF_INTERNAL_MASK", "YES")
                    .unwrap();
                band.create_mask_band(true).unwrap();
                let mut mb = band.open_mask_band().unwrap();
                let v: Vec<u8> = m.iter().map(|&x| x * 255).collect();
                let mut buf = gdal::raster::Buffer::new((4, 4), v);
                mb.write((0, 0), (4, 4), &mut buf).unwrap();
            }
        }
    }

    #[test]
    fn mask_and_alpha_bands_are_honoured_by_every_read_path() {
        let dir = tempfile::tempdir().unwrap();
        // Invalid: pixels 5 and 10 (row-major); pixel 0 is nodata.
        let mut mask = [1u8; 16];
        mask[5] = 0;
        mask[10] = 0;
        let asset = |name: &str| AssetRef {
            href: dir.path().join(name).to_string_lossy().into_owned(),
            epsg: Some(32618),
            transform: None,
            shape: None,
            scale: 1.0,
            offset: 0.0,
            nodata: None,
            band: Default::default(),
        };
        for (name, m, alpha) in [
            ("plain.tif", None, false),
            ("mask.tif", Some(&mask[..]), false),
            ("alpha.tif", Some(&mask[..]), true),
        ] {
            // Same pixel size: the windowed read; 20 m onto 10 m: replication; 10 m onto 20 m:
            // the warp (each target pixel's centre on a source pixel corner: GDAL's nearest
            // takes the pixel below and to the right, as `src` does).
            for (pixel, target, path) in [
                (10.0, 10.0, ReadPath::Window),
                (20.0, 10.0, ReadPath::Replicate),
                (10.0, 20.0, ReadPath::Warp),
            ] {
                let file = format!("{pixel}_{name}");
                masked_tiff(&dir.path().join(&file), pixel, m, alpha);
                let n = (4.0 * pixel / target) as usize;
                let grid = Grid::north_up("EPSG:32618", 585000.0, 5033000.0, target, n, n);
                let mut out = vec![f32::NAN; grid.len()];
                let got = read_asset(
                    &asset(&file),
                    &grid,
                    32618,
                    Resampling::Nearest,
                    1,
                    &mut out,
                )
                .unwrap();
                assert_eq!(got, path, "{file}");
                // The source pixel under each target pixel (nearest).
                let src = |r: usize, c: usize| -> usize {
                    let (y, x) = ((r as f64 + 0.5) * target, (c as f64 + 0.5) * target);
                    (y / pixel) as usize * 4 + (x / pixel) as usize
                };
                for r in 0..n {
                    for c in 0..n {
                        let s = src(r, c);
                        let invalid = (s == 0 && !alpha) || (m.is_some() && mask[s] == 0);
                        let v = out[r * n + c];
                        if invalid {
                            assert!(v.is_nan(), "{file} {path:?} ({r}, {c}) = {v}: masked");
                        } else if path != ReadPath::Warp {
                            assert_eq!(v, (s + 1) as f32, "{file} ({r}, {c})");
                        } else {
                            assert!(v.is_finite(), "{file} ({r}, {c})");
                        }
                    }
                }
            }
        }
    }
}
