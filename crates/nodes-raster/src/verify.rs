//! What a file says about its own bytes, checked before its pixels are trusted: each stored
//! block that a read needs is inside the file, has the size its layout implies, carries the
//! leader and trailer a COG's ghost header promises, and, when DEFLATE-compressed, inflates and
//! passes its zlib Adler-32 check (libtiff stops inflating once a block is full and never looks
//! at the check, so a few flipped bytes inside a tile would otherwise decode to wrong pixels
//! without a word). A file read whole is also checked against the asset's `file:checksum`.

use std::ffi::{CStr, CString};

use gdal::raster::RasterBand;

use crate::alloc;
use crate::gdalx::{self, VsiFile};

/// A window of pixels of one raster level: columns `col..col + width`, rows `row..row + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// First column.
    pub col: usize,
    /// First row.
    pub row: usize,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

impl Window {
    /// The window of `(c0, r0)`, `(nw, nh)` as the readers compute it (non-negative offsets).
    pub(crate) fn of((c0, r0): (i64, i64), (nw, nh): (usize, usize)) -> Self {
        Window {
            col: c0.max(0) as usize,
            row: r0.max(0) as usize,
            width: nw,
            height: nh,
        }
    }

    /// True when the window is the whole `width x height` raster.
    pub(crate) fn covers(&self, (width, height): (usize, usize)) -> bool {
        self.col == 0 && self.row == 0 && self.width >= width && self.height >= height
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pixels x {}..{}, y {}..{}",
            self.col,
            self.col + self.width,
            self.row,
            self.row + self.height
        )
    }
}

/// What a COG's ghost header (GDAL_STRUCTURAL_METADATA) promises around each block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ghost {
    /// Each block is preceded by its size as a little-endian u32.
    leader: bool,
    /// Each block is followed by a copy of its last 4 bytes.
    trailer: bool,
}

impl Ghost {
    /// Parses the ghost header at the start of a TIFF file (`head`: its first bytes). A file
    /// marked as edited since (KNOWN_INCOMPATIBLE_EDITION=YES) promises nothing.
    fn parse(head: &[u8]) -> Ghost {
        let start = match head.get(..4) {
            Some(b"II*\0") | Some(b"MM\0*") => 8,
            Some(b"II+\0") | Some(b"MM\0+") => 16,
            _ => return Ghost::default(),
        };
        // Big-endian files: the leader's byte order is not the one checked here.
        let little = head.starts_with(b"II");
        let key = b"GDAL_STRUCTURAL_METADATA_SIZE=";
        let Some(rest) = head.get(start..).filter(|r| r.starts_with(key)) else {
            return Ghost::default();
        };
        let rest = &rest[key.len()..];
        let size: usize = std::str::from_utf8(&rest[..rest.len().min(6)])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // "NNNNNN bytes\n" then the content.
        let body_start = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let body = &rest[body_start..rest.len().min(body_start + size)];
        let text = String::from_utf8_lossy(body);
        let has = |line: &str| text.lines().any(|l| l.trim() == line);
        if has("KNOWN_INCOMPATIBLE_EDITION=YES") {
            return Ghost::default();
        }
        Ghost {
            leader: little && has("BLOCK_LEADER=SIZE_AS_UINT4"),
            trailer: has("BLOCK_TRAILER=LAST_4_BYTES_REPEATED"),
        }
    }
}

/// The layout of one band's stored blocks.
struct Layout {
    /// Block size in pixels.
    block: (usize, usize),
    /// Raster size in pixels.
    size: (usize, usize),
    /// Bytes of a full block once decompressed; None when bit-packed (NBITS).
    full_bytes: Option<usize>,
    /// Bytes of one row of a block once decompressed.
    row_bytes: usize,
    /// DEFLATE-compressed.
    deflate: bool,
    /// Not compressed.
    raw: bool,
}

fn metadata(object: gdal_sys::GDALMajorObjectH, key: &str, domain: &str) -> Option<String> {
    let (k, d) = (CString::new(key).ok()?, CString::new(domain).ok()?);
    // SAFETY: `object` is a live GDAL object; key and domain are NUL-terminated; the returned
    // string belongs to GDAL and is copied before any other GDAL call.
    unsafe {
        let v = gdal_sys::GDALGetMetadataItem(object, k.as_ptr(), d.as_ptr());
        (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

impl Layout {
    fn of(band: &RasterBand) -> Layout {
        // SAFETY: the handle of a band that outlives this function; only read through.
        let h = unsafe { band.c_rasterband() };
        // SAFETY: `h` is a live band handle; its dataset (possibly an overview's) lives as long.
        let ds = unsafe { gdal_sys::GDALGetBandDataset(h) };
        let ds_meta = |key: &str| {
            if ds.is_null() {
                None
            } else {
                metadata(ds.cast(), key, "IMAGE_STRUCTURE")
            }
        };
        let compression = ds_meta("COMPRESSION");
        let pixel_interleaved = ds_meta("INTERLEAVE").as_deref() == Some("PIXEL");
        let samples = if pixel_interleaved && !ds.is_null() {
            // SAFETY: a live dataset handle.
            unsafe { gdal_sys::GDALGetRasterCount(ds) }.max(1) as usize
        } else {
            1
        };
        // SAFETY: a live band handle; a plain type query.
        let bytes = unsafe {
            gdal_sys::GDALGetDataTypeSizeBytes(gdal_sys::GDALGetRasterDataType(h))
        }
        .max(1) as usize;
        let nbits = metadata(h.cast(), "NBITS", "IMAGE_STRUCTURE")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n != bytes * 8);
        let block = band.block_size();
        let row_bytes = block.0 * bytes * samples;
        Layout {
            block,
            size: band.size(),
            full_bytes: nbits.is_none().then(|| row_bytes * block.1),
            row_bytes,
            deflate: compression.as_deref() == Some("DEFLATE"),
            raw: compression.is_none(),
        }
    }

    /// The decompressed sizes a block in block row `by` may have: a full block, or (for strips,
    /// whose last one may hold only the rows left) the rows left.
    fn allowed_bytes(&self, by: usize) -> Option<[usize; 2]> {
        let full = self.full_bytes?;
        let rows_left = self.size.1.saturating_sub(by * self.block.1);
        let partial = if self.block.0 >= self.size.0 && rows_left < self.block.1 {
            self.row_bytes * rows_left
        } else {
            full
        };
        Some([full, partial])
    }
}

/// Reads and checks the stored blocks and bytes of one file; the file is opened on first need.
pub(crate) struct Checker {
    path: String,
    file: Option<VsiFile>,
    ghost: Ghost,
}

impl Checker {
    /// A checker for the file GDAL opened at `path`.
    pub(crate) fn new(path: &str) -> Self {
        Checker {
            path: path.to_string(),
            file: None,
            ghost: Ghost::default(),
        }
    }

    fn file(&mut self) -> Result<&mut VsiFile, String> {
        if self.file.is_none() {
            let mut f = VsiFile::open(&self.path)?;
            let mut head = vec![0u8; 1024];
            let n = f.read_at(0, &mut head)?;
            self.ghost = Ghost::parse(&head[..n]);
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| "the file is not open".to_string())
    }

    /// Checks every stored block of `band` that `window` touches; `what` names the band in
    /// messages ("band 1", "band 1, overview 2", "the mask of band 1").
    ///
    /// # Errors
    /// A message naming the band, the block, its pixels and its bytes, and what is wrong.
    pub(crate) fn check_blocks(
        &mut self,
        band: &RasterBand,
        what: &str,
        window: Window,
    ) -> Result<(), String> {
        if window.width == 0 || window.height == 0 {
            return Ok(());
        }
        let layout = Layout::of(band);
        let (bw, bh) = layout.block;
        if bw == 0 || bh == 0 {
            return Ok(());
        }
        let (x0, x1) = (window.col / bw, (window.col + window.width - 1) / bw);
        let (y0, y1) = (window.row / bh, (window.row + window.height - 1) / bh);
        let mut inflated: Vec<u8> = Vec::new();
        // SAFETY: the handle of a band that outlives this function; only read through.
        let handle = unsafe { band.c_rasterband() };
        for by in y0..=y1 {
            for bx in x0..=x1 {
                let tiff = |key: &str| {
                    metadata(handle.cast(), &format!("{key}_{bx}_{by}"), "TIFF")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                };
                // Not a TIFF, or a sparse block (GDAL fills it with nodata): nothing stored.
                let (Some(offset), Some(size)) = (tiff("BLOCK_OFFSET"), tiff("BLOCK_SIZE")) else {
                    continue;
                };
                if size == 0 {
                    continue;
                }
                let pixels = Window {
                    col: bx * bw,
                    row: by * bh,
                    width: bw.min(layout.size.0.saturating_sub(bx * bw)),
                    height: bh.min(layout.size.1.saturating_sub(by * bh)),
                };
                let name = || {
                    format!(
                        "{what}, block ({bx}, {by}) ({pixels}; file bytes {offset}..{})",
                        offset + size
                    )
                };
                self.check_block(&layout, by, offset, size, &mut inflated)
                    .map_err(|e| format!("{}: {e}", name()))?;
            }
        }
        Ok(())
    }

    /// Checks one stored block of `size` bytes at `offset`; `inflated` is a reusable buffer.
    fn check_block(
        &mut self,
        layout: &Layout,
        by: usize,
        offset: u64,
        size: u64,
        inflated: &mut Vec<u8>,
    ) -> Result<(), String> {
        let len = usize::try_from(size).map_err(|_| format!("a block of {size} bytes"))?;
        // Opening the file reads its ghost header.
        self.file()?;
        let ghost = self.ghost;
        let lead = if ghost.leader && offset >= 4 { 4 } else { 0 };
        let trail = if ghost.trailer { 4 } else { 0 };
        let total = len
            .checked_add(lead + trail)
            .ok_or_else(|| format!("a block of {size} bytes"))?;
        let mut raw = alloc::filled(total, 0u8).map_err(|e| e.to_string())?;
        let got = self.file()?.read_at(offset - lead as u64, &mut raw)?;
        if got < lead + len {
            if let Some(failures) = gdalx::take_failures() {
                return Err(format!("reading the block: {failures}"));
            }
            return Err(format!(
                "the file ends inside the block ({} of its {len} bytes are there): it is truncated",
                got.saturating_sub(lead)
            ));
        }
        if lead == 4 {
            let leader = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            if u64::from(leader) != size {
                return Err(format!(
                    "the block's leader says {leader} bytes but the TIFF index says {size}: the file is inconsistent"
                ));
            }
        }
        let data = &raw[lead..lead + len];
        if trail == 4 && len >= 4 {
            match raw[..got].get(lead + len..lead + len + 4) {
                None => {
                    return Err(
                        "the file ends before the block's trailer: it is truncated".into(),
                    )
                }
                Some(t) if t != &data[len - 4..] => {
                    return Err(
                        "the block's trailer does not repeat its last 4 bytes: the block was overwritten or damaged"
                            .into(),
                    )
                }
                Some(_) => {}
            }
        }
        let allowed = layout.allowed_bytes(by);
        if layout.deflate {
            // Room for one byte more than a full block, so that a block inflating to more shows.
            let capacity = layout.row_bytes * layout.block.1 + 1;
            if inflated.len() < capacity {
                *inflated = alloc::filled(capacity, 0u8).map_err(|e| e.to_string())?;
            }
            let Some(n) = gdalx::zlib_inflate(data, &mut inflated[..capacity]) else {
                return Err(
                    "the DEFLATE data is damaged: it does not inflate or fails its Adler-32 check"
                        .into(),
                );
            };
            if let Some(a) = allowed {
                if !a.contains(&n) {
                    return Err(format!(
                        "the block inflates to {n} bytes, not the {} of its layout",
                        a[0]
                    ));
                }
            }
        } else if layout.raw {
            // Fewer bytes than the layout needs: pixels would be missing (a writer may pad).
            if let Some(least) = allowed.map(|a| a[0].min(a[1])) {
                if len < least {
                    return Err(format!(
                        "the uncompressed block has {len} bytes, fewer than the {least} of its layout"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the whole file against `multihash`, a STAC `file:checksum` (hex multihash of
    /// SHA2-256 or BLAKE3). Other hash functions are not checked.
    ///
    /// # Errors
    /// A malformed checksum, a file that cannot be read, or one whose digest differs.
    pub(crate) fn check_file(&mut self, multihash: &str) -> Result<(), String> {
        let Some(expected) = Multihash::parse(multihash)? else {
            tracing::debug!(
                checksum = multihash,
                "file:checksum with a hash function flow does not check"
            );
            return Ok(());
        };
        let file = self.file()?;
        let mut hasher = expected.hasher();
        let mut buf = alloc::filled(1 << 20, 0u8).map_err(|e| e.to_string())?;
        let mut offset = 0u64;
        loop {
            let n = file.read_at(offset, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let got = hasher.finish();
        if got != expected.digest {
            return Err(format!(
                "the file ({offset} bytes) does not match its file:checksum: {} {} expected, {} found",
                expected.function.name(),
                hex(&expected.digest),
                hex(&got)
            ));
        }
        Ok(())
    }
}

/// Hash functions of `file:checksum` that flow checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashFunction {
    Sha256,
    Blake3,
}

impl HashFunction {
    fn name(self) -> &'static str {
        match self {
            HashFunction::Sha256 => "sha2-256",
            HashFunction::Blake3 => "blake3",
        }
    }
}

/// A parsed multihash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Multihash {
    function: HashFunction,
    digest: Vec<u8>,
}

enum Hasher {
    Sha256(Box<ring::digest::Context>),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(c) => c.update(bytes),
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(c) => c.finish().as_ref().to_vec(),
            Hasher::Blake3(h) => h.finalize().as_bytes().to_vec(),
        }
    }
}

impl Multihash {
    /// Parses a hex multihash; None for a hash function flow does not check.
    fn parse(text: &str) -> Result<Option<Multihash>, String> {
        let bytes = unhex(text.trim())
            .ok_or_else(|| format!("file:checksum `{text}` is not a hex multihash"))?;
        let (code, len, digest) = match bytes.as_slice() {
            [code, len, digest @ ..] => (*code, *len as usize, digest),
            _ => return Err(format!("file:checksum `{text}` is too short")),
        };
        // Codes of more than one varint byte (>= 0x80) name functions not checked here.
        let function = match code {
            0x12 => HashFunction::Sha256,
            0x1e => HashFunction::Blake3,
            _ => return Ok(None),
        };
        if digest.len() != len || len != 32 {
            return Err(format!(
                "file:checksum `{text}` declares a {len}-byte {} digest but holds {} bytes",
                function.name(),
                digest.len()
            ));
        }
        Ok(Some(Multihash {
            function,
            digest: digest.to_vec(),
        }))
    }

    fn hasher(&self) -> Hasher {
        match self.function {
            HashFunction::Sha256 => {
                Hasher::Sha256(Box::new(ring::digest::Context::new(&ring::digest::SHA256)))
            }
            HashFunction::Blake3 => Hasher::Blake3(Box::default()),
        }
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multihashes_of_sha256_and_blake3_are_parsed_and_others_skipped() {
        let sha = "1220".to_string() + &"ab".repeat(32);
        let m = Multihash::parse(&sha).unwrap().unwrap();
        assert_eq!(m.function, HashFunction::Sha256);
        assert_eq!(m.digest, vec![0xab; 32]);
        let b3 = "1e20".to_string() + &"01".repeat(32);
        assert_eq!(
            Multihash::parse(&b3).unwrap().unwrap().function,
            HashFunction::Blake3
        );
        // md5 (0xd5 0x01): a two-byte varint code, not checked.
        assert_eq!(
            Multihash::parse(&("d50110".to_string() + &"00".repeat(16))).unwrap(),
            None
        );
        for bad in ["xyz", "12", "1220abcd", "122"] {
            assert!(Multihash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sha256_and_blake3_digests_are_the_reference_ones() {
        // FIPS 180-2's "abc" vector, and BLAKE3's own hash of "abc".
        let mut h = Multihash::parse(&("1220".to_string() + &"00".repeat(32)))
            .unwrap()
            .unwrap()
            .hasher();
        h.update(b"abc");
        assert_eq!(
            hex(&h.finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Multihash::parse(&("1e20".to_string() + &"00".repeat(32)))
            .unwrap()
            .unwrap()
            .hasher();
        h.update(b"abc");
        assert_eq!(hex(&h.finish()), blake3::hash(b"abc").to_hex().as_str());
    }

    #[test]
    fn ghost_headers_promise_leaders_and_trailers_unless_edited() {
        let head = |body: &str| {
            let mut v = b"II*\0\0\0\0\0".to_vec();
            v.extend(
                format!(
                    "GDAL_STRUCTURAL_METADATA_SIZE={:06} bytes\n{body}",
                    body.len()
                )
                .bytes(),
            );
            v
        };
        let cog = "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n\
                   BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ";
        assert_eq!(
            Ghost::parse(&head(cog)),
            Ghost {
                leader: true,
                trailer: true
            }
        );
        let edited = cog.replace("EDITION=NO", "EDITION=YES");
        assert_eq!(Ghost::parse(&head(&edited)), Ghost::default());
        assert_eq!(Ghost::parse(b"II*\0\x08\0\0\0plain"), Ghost::default());
        assert_eq!(Ghost::parse(b"\x89PNG"), Ghost::default());
    }

    #[test]
    fn damaged_zlib_streams_fail_their_check() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut packed = vec![0u8; 30_000];
        let mut n = 0usize;
        // SAFETY: both buffers are valid for their lengths; GDAL writes at most `packed.len()`.
        let rv = unsafe {
            gdal_sys::CPLZLibDeflate(
                data.as_ptr().cast(),
                data.len(),
                6,
                packed.as_mut_ptr().cast(),
                packed.len(),
                &mut n,
            )
        };
        assert!(!rv.is_null());
        packed.truncate(n);
        let mut out = vec![0u8; data.len() + 1];
        assert_eq!(gdalx::zlib_inflate(&packed, &mut out), Some(data.len()));
        assert_eq!(&out[..data.len()], &data[..]);
        // Four flipped bytes in the middle, then the stream cut short: both are refused.
        let mut bad = packed.clone();
        for b in &mut bad[n / 2..n / 2 + 4] {
            *b ^= 0xff;
        }
        assert_eq!(gdalx::zlib_inflate(&bad, &mut out), None);
        assert_eq!(gdalx::zlib_inflate(&packed[..n - 6], &mut out), None);
        // A buffer too small for the stream is refused too.
        assert_eq!(gdalx::zlib_inflate(&packed, &mut out[..100]), None);
    }
}
