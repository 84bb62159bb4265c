//! Bit masks on an integer quality band (Landsat Collection 2 `QA_PIXEL` and the like): the
//! `bits` param of `mask-nodata`, parsed from the recipe into a [`BitMask`] that cannot hold an
//! invalid bit, and the test of one pixel's quality value against it.
//!
//! The cube is f32, which holds every integer below 2^24 exactly: a 16-bit quality band reads
//! exactly, bits 0..=23 can be tested, and a value that is not such an integer (scaled,
//! resampled, negative) cannot be a bit field and is refused rather than guessed at.

use flow_core::ParamError;

/// The param this module parses.
const PARAM: &str = "bits";

/// The highest bit a mask may test: f32 holds integers exactly below 2^24.
pub(super) const MAX_BIT: u32 = 23;

/// The largest quality value read exactly (2^24 - 1).
const MAX_VALUE: f32 = 16_777_215.0;

/// A named bit mask.
#[derive(Debug, Clone, Copy)]
pub(super) struct Preset {
    /// Its name in recipes.
    pub(super) name: &'static str,
    /// The band it reads (a STAC asset key).
    pub(super) band: &'static str,
    /// The bits that mask a pixel when set.
    pub(super) bits: &'static [u32],
}

/// The presets `bits` may name.
///
/// `landsat-c2-qa`: Landsat 8-9 (and 4-7) Collection 2 Level-2 `QA_PIXEL` (USGS, LSDS-1619 /
/// LSDS-1328): bit 0 fill, 1 dilated cloud, 2 cirrus (high confidence; Landsat 8-9 only), 3 cloud,
/// 4 cloud shadow; bits 5 snow, 6 clear, 7 water and the two-bit confidences 8-9 (cloud), 10-11
/// (shadow), 12-13 (snow / ice), 14-15 (cirrus) are not masked. The asset is `qa_pixel` on
/// Planetary Computer and on the USGS STAC server.
pub(super) const PRESETS: &[Preset] = &[Preset {
    name: "landsat-c2-qa",
    band: "qa_pixel",
    bits: &[0, 1, 2, 3, 4],
}];

/// A field of adjacent bits read as an unsigned number, which masks a pixel when it is at least
/// `min` (Landsat's two-bit confidences: 3 is high).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BitField {
    /// Its lowest bit.
    first: u32,
    /// Its number of bits (1..=24, `first + width - 1 <= MAX_BIT`).
    width: u32,
    /// The smallest value that masks (1..=2^width - 1).
    min: u32,
}

impl BitField {
    /// The field's value in `qa`.
    fn value(self, qa: u32) -> u32 {
        (qa >> self.first) & ((1u32 << self.width) - 1)
    }
}

/// A validated bit mask: a band, the single bits that mask a pixel when set and the fields that
/// mask it when large enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BitMask {
    /// The quality band's name (matched as [`flow_core::Raster::band_index`] matches).
    pub(super) band: String,
    /// The preset it started from, for messages.
    pub(super) preset: Option<&'static str>,
    /// One bit per masking bit.
    any: u32,
    /// The multi-bit fields.
    fields: Vec<BitField>,
}

/// What a quality value says about its pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Keep the pixel.
    Keep,
    /// Mask it: a bit or field matched, or the quality value is NaN (outside the footprint,
    /// the band's nodata).
    Mask,
    /// The value is not an integer 0..2^24 and so no bit field.
    NotBits,
}

/// An error of the `bits` param.
fn refuse(message: impl Into<String>) -> ParamError {
    ParamError::new(PARAM, message)
}

/// The names of the presets, for help texts.
fn preset_names() -> String {
    let names: Vec<String> = PRESETS.iter().map(|p| format!("\"{}\"", p.name)).collect();
    format!("presets: {}", names.join(", "))
}

/// The preset called `name`.
fn preset(name: &str) -> Result<&'static Preset, ParamError> {
    PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        refuse(format!("unknown bit-mask preset `{name}`")).with_help(preset_names())
    })
}

/// An integer of the recipe (a float with no fraction counts: `--set` and profiles may give one).
fn integer(value: &toml::Value) -> Option<i64> {
    match value {
        toml::Value::Integer(i) => Some(*i),
        toml::Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        _ => None,
    }
}

/// A bit number at `at` (`bits.mask`, ...), checked to be 0..=[`MAX_BIT`].
fn bit(value: &toml::Value, at: &str) -> Result<u32, ParamError> {
    match integer(value) {
        Some(b) if (0..=i64::from(MAX_BIT)).contains(&b) => Ok(b as u32),
        Some(b) => Err(refuse(format!(
            "`{at}`: bit {b} is out of range; bits are 0..={MAX_BIT} (the cube is f32, which \
             holds integers exactly below 2^24)"
        ))),
        None => Err(refuse(format!(
            "`{at}` must hold bit numbers (integers 0..={MAX_BIT}), found {value}"
        ))),
    }
}

/// The array at `at`, or an error.
fn array<'a>(value: &'a toml::Value, at: &str) -> Result<&'a [toml::Value], ParamError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| refuse(format!("`{at}` must be an array, found {value}")))
}

/// Refuses keys of `table` (at `at`) other than `allowed`.
fn known_keys(table: &toml::Table, at: &str, allowed: &[&str]) -> Result<(), ParamError> {
    match table.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(refuse(format!(
            "unknown key `{k}` in `{at}`; it takes {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// One entry of `bits.fields`: `{ bits = [first, last], min = n }` (or `bits = [bit]`).
fn field(value: &toml::Value, at: &str) -> Result<BitField, ParamError> {
    let table = value.as_table().ok_or_else(|| {
        refuse(format!(
            "`{at}` must be a table like {{ bits = [8, 9], min = 3 }}, found {value}"
        ))
    })?;
    known_keys(table, at, &["bits", "min"])?;
    let bits_at = format!("{at}.bits");
    let bits = table
        .get("bits")
        .ok_or_else(|| refuse(format!("`{at}` needs `bits = [first, last]`")))?;
    let bits = array(bits, &bits_at)?
        .iter()
        .map(|b| bit(b, &bits_at))
        .collect::<Result<Vec<u32>, _>>()?;
    let (first, last) = match bits.as_slice() {
        [b] => (*b, *b),
        [a, b] if a <= b => (*a, *b),
        _ => {
            return Err(refuse(format!(
                "`{bits_at}` must be [first, last] with first <= last (or one bit), found {bits:?}"
            )))
        }
    };
    let width = last - first + 1;
    let largest = (1u64 << width) - 1;
    let min_at = format!("{at}.min");
    let min = table
        .get("min")
        .ok_or_else(|| refuse(format!("`{at}` needs `min`, the smallest value that masks")))?;
    let min = match integer(min) {
        Some(m) if m >= 1 && (m as u64) <= largest => m as u32,
        _ => {
            return Err(refuse(format!(
                "`{min_at}` must be an integer 1..={largest} (the field has {width} bit(s)), \
                 found {min}"
            )))
        }
    };
    Ok(BitField { first, width, min })
}

impl BitMask {
    /// Parses the `bits` param: a preset's name, or a table of `band`, `mask` (bits), `fields`
    /// (`{ bits = [first, last], min = n }`) and `preset` (whose band is the default and whose
    /// bits are added to those listed).
    ///
    /// # Errors
    /// A [`ParamError`] on `bits` naming what is wrong: an unknown preset or key, a bit out of
    /// 0..=[`MAX_BIT`], a field whose `min` it cannot hold, no band, or nothing to test.
    pub(super) fn parse(value: &toml::Value) -> Result<BitMask, ParamError> {
        let table = match value {
            toml::Value::String(name) => {
                let p = preset(name)?;
                return Ok(BitMask {
                    band: p.band.into(),
                    preset: Some(p.name),
                    any: p.bits.iter().fold(0, |m, b| m | 1 << b),
                    fields: Vec::new(),
                });
            }
            toml::Value::Table(t) => t,
            other => {
                return Err(refuse(format!(
                    "`bits` must be a preset's name or a table like {{ band = \"qa_pixel\", mask \
                     = [3, 4] }}, found {other}"
                ))
                .with_help(preset_names()))
            }
        };
        known_keys(table, PARAM, &["band", "mask", "fields", "preset"])?;
        let preset = match table.get("preset") {
            None => None,
            Some(toml::Value::String(name)) => Some(preset(name)?),
            Some(other) => {
                return Err(
                    refuse(format!("`bits.preset` must be a string, found {other}"))
                        .with_help(preset_names()),
                )
            }
        };
        let band = match (table.get("band"), preset) {
            (Some(toml::Value::String(b)), _) if !b.is_empty() => b.clone(),
            (Some(other), _) => {
                return Err(refuse(format!(
                    "`bits.band` must name a band, found {other}"
                )))
            }
            (None, Some(p)) => p.band.into(),
            (None, None) => {
                return Err(refuse(
                    "`bits` needs `band`, the quality band to read (or a `preset`)",
                ))
            }
        };
        let mut any = preset.map_or(0, |p| p.bits.iter().fold(0u32, |m, b| m | 1 << b));
        if let Some(mask) = table.get("mask") {
            for b in array(mask, "bits.mask")? {
                any |= 1 << bit(b, "bits.mask")?;
            }
        }
        let mut fields = Vec::new();
        if let Some(list) = table.get("fields") {
            for (i, f) in array(list, "bits.fields")?.iter().enumerate() {
                fields.push(field(f, &format!("bits.fields[{i}]"))?);
            }
        }
        if any == 0 && fields.is_empty() {
            return Err(refuse(
                "`bits` tests no bit: give `mask = [bit, ...]`, `fields` or a `preset`",
            ));
        }
        Ok(BitMask {
            band,
            preset: preset.map(|p| p.name),
            any,
            fields,
        })
    }

    /// True when `qa` has a masking bit set or a field at or above its `min`.
    pub(super) fn hits(&self, qa: u32) -> bool {
        qa & self.any != 0 || self.fields.iter().any(|f| f.value(qa) >= f.min)
    }

    /// What the quality value `v`, as read into the cube, says about its pixel.
    pub(super) fn verdict(&self, v: f32) -> Verdict {
        if v.is_nan() {
            return Verdict::Mask;
        }
        // Also false for infinities and negative values.
        if !(0.0..=MAX_VALUE).contains(&v) || v.fract() != 0.0 {
            return Verdict::NotBits;
        }
        if self.hits(v as u32) {
            Verdict::Mask
        } else {
            Verdict::Keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BitMask, ParamError> {
        let table: toml::Table = toml::from_str(&format!("bits = {text}")).unwrap();
        BitMask::parse(&table["bits"])
    }

    /// Landsat C2 QA_PIXEL values as the USGS documents them.
    const CLEAR: u32 = 21824; // bits 6 (clear), 8, 10, 12, 14 (low confidences)
    const WATER: u32 = 21952; // clear + bit 7
    const CLOUD: u32 = 22280; // bit 3, cloud confidence high (8-9)
    const SHADOW: u32 = 23888; // bit 4, shadow confidence high (10-11)
    const DILATED: u32 = 21762; // bit 1
    const CIRRUS: u32 = 54596; // bit 2, cirrus confidence high (14-15)
    const FILL: u32 = 1;

    #[test]
    fn the_landsat_preset_masks_fill_dilated_cirrus_cloud_and_shadow() {
        let m = parse("\"landsat-c2-qa\"").unwrap();
        assert_eq!(m.band, "qa_pixel");
        for qa in [CLOUD, SHADOW, DILATED, CIRRUS, FILL] {
            assert!(m.hits(qa), "{qa} = {qa:#018b}");
        }
        for qa in [CLEAR, WATER, 0, 1 << 5, 1 << 7, 0xFFE0] {
            assert!(!m.hits(qa), "{qa} = {qa:#018b}");
        }
    }

    #[test]
    fn single_bits_and_fields() {
        let m = parse("{ band = \"qa\", mask = [3] }").unwrap();
        assert!(m.hits(CLOUD) && !m.hits(SHADOW) && !m.hits(FILL) && !m.hits(CLEAR));
        // High cloud confidence: bits 8-9 equal to 3.
        let m = parse("{ band = \"qa\", fields = [{ bits = [8, 9], min = 3 }] }").unwrap();
        assert!(m.hits(CLOUD) && !m.hits(CLEAR) && !m.hits(SHADOW));
        assert!(m.hits(0b11 << 8) && !m.hits(0b10 << 8) && !m.hits(0b01 << 8));
        // Medium or high.
        let m = parse("{ band = \"qa\", fields = [{ bits = [8, 9], min = 2 }] }").unwrap();
        assert!(m.hits(0b10 << 8) && m.hits(0b11 << 8) && !m.hits(0b01 << 8));
        // A one-bit field is a bit; the highest bit works.
        let m = parse("{ band = \"qa\", fields = [{ bits = [23], min = 1 }] }").unwrap();
        assert!(m.hits(1 << 23) && !m.hits((1 << 23) - 1));
        // A preset plus listed bits (snow), another band name.
        let m = parse("{ preset = \"landsat-c2-qa\", band = \"QA_PIXEL\", mask = [5] }").unwrap();
        assert_eq!(
            (m.band.as_str(), m.preset),
            ("QA_PIXEL", Some("landsat-c2-qa"))
        );
        assert!(m.hits(1 << 5) && m.hits(CLOUD) && !m.hits(WATER));
    }

    #[test]
    fn values_that_are_no_bit_field_are_never_guessed_at() {
        let m = parse("{ band = \"qa\", mask = [3] }").unwrap();
        assert_eq!(m.verdict(f32::NAN), Verdict::Mask);
        assert_eq!(m.verdict(CLOUD as f32), Verdict::Mask);
        assert_eq!(m.verdict(CLEAR as f32), Verdict::Keep);
        assert_eq!(m.verdict(0.0), Verdict::Keep);
        assert_eq!(m.verdict(MAX_VALUE), Verdict::Mask); // every bit set
        for v in [
            -1.0,
            -8.0,
            0.5,
            21824.25,
            f32::INFINITY,
            f32::NEG_INFINITY,
            16_777_216.0,
            1e30,
        ] {
            assert_eq!(m.verdict(v), Verdict::NotBits, "{v}");
        }
    }

    #[test]
    fn bad_masks_are_refused_on_the_bits_param() {
        for (text, says) in [
            ("\"landsat-c3\"", "unknown bit-mask preset `landsat-c3`"),
            ("{ band = \"qa\", mask = [24] }", "bit 24 is out of range"),
            ("{ band = \"qa\", mask = [-1] }", "bit -1 is out of range"),
            ("{ band = \"qa\", mask = [\"3\"] }", "must hold bit numbers"),
            (
                "{ band = \"qa\", mask = 3 }",
                "`bits.mask` must be an array",
            ),
            ("{ band = \"qa\", mask = [] }", "tests no bit"),
            ("{ mask = [3] }", "needs `band`"),
            ("{ band = \"\", mask = [3] }", "must name a band"),
            (
                "{ band = \"qa\", mask = [3], masks = [4] }",
                "unknown key `masks`",
            ),
            (
                "{ band = \"qa\", fields = [{ bits = [9, 8], min = 1 }] }",
                "first <= last",
            ),
            (
                "{ band = \"qa\", fields = [{ bits = [8, 9], min = 4 }] }",
                "1..=3",
            ),
            (
                "{ band = \"qa\", fields = [{ bits = [8, 9], min = 0 }] }",
                "1..=3",
            ),
            (
                "{ band = \"qa\", fields = [{ bits = [8, 30], min = 1 }] }",
                "bit 30",
            ),
            (
                "{ band = \"qa\", fields = [{ bits = [8, 9] }] }",
                "needs `min`",
            ),
            (
                "{ band = \"qa\", fields = [[8, 9]] }",
                "`bits.fields[0]` must be a table",
            ),
            ("{ preset = 3 }", "must be a string"),
            ("7", "must be a preset's name or a table"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("bits"), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }
}
