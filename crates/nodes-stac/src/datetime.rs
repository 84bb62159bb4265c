//! RFC 3339 instants and STAC datetime intervals, without a date-time crate.
//!
//! Instants are nanoseconds since the Unix epoch (`i128`), which keeps comparisons exact for every
//! precision that STAC catalogs use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    let part = s.get(..n)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

/// Parses `YYYY-MM-DD` into (year, month, day), checking the ranges.
fn parse_date(s: &str) -> Option<(i64, u32, u32)> {
    if s.len() != 10 || s.as_bytes()[4] != b'-' || s.as_bytes()[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(s, 4)?, digits(&s[5..], 2)?, digits(&s[8..], 2)?);
    let y = i64::from(y);
    ((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)).then_some((y, m, d))
}

/// Parses an RFC 3339 date-time (`2021-07-01T10:20:30.5Z`, `...+02:00`) into nanoseconds since
/// the Unix epoch. A space or lower-case `t`/`z` is accepted as RFC 3339 allows.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.len() < 20 || !s.is_char_boundary(10) {
        return None;
    }
    let (y, mo, d) = parse_date(&s[..10])?;
    let rest = &s[10..];
    let sep = rest.as_bytes()[0];
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    let t = &rest[1..];
    let b = t.as_bytes();
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, mi, sec) = (digits(t, 2)?, digits(&t[3..], 2)?, digits(&t[6..], 2)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &t[8..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        for (i, c) in frac[..n].bytes().enumerate() {
            if i < 9 {
                nanos += i128::from(c - b'0') * 10i128.pow(8 - i as u32);
            }
        }
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = &rest[1..];
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om) = (digits(o, 2)?, digits(&o[3..], 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (i64::from(oh) * 3600 + i64::from(om) * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(sec)
        - offset_secs;
    Some(i128::from(secs) * NANOS_PER_SEC + nanos)
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC (`2021-07-01T00:00:00Z`), with a
/// fraction only when there is one.
pub fn format_rfc3339(nanos: i128) -> String {
    let secs = nanos.div_euclid(NANOS_PER_SEC);
    let frac = nanos.rem_euclid(NANOS_PER_SEC);
    let days = secs.div_euclid(86_400) as i64;
    let sod = secs.rem_euclid(86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// An instant as a [`SystemTime`].
pub fn to_system_time(nanos: i128) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    } else {
        UNIX_EPOCH
    }
}

/// The current time in nanoseconds since the epoch.
pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// A closed time interval; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// First instant, inclusive.
    pub start: Option<i128>,
    /// Last instant, inclusive.
    pub end: Option<i128>,
}

impl Interval {
    /// True when the two intervals share at least one instant.
    pub fn overlaps(&self, other: &Interval) -> bool {
        let a = match (self.start, other.end) {
            (Some(s), Some(e)) => s <= e,
            _ => true,
        };
        let b = match (other.start, self.end) {
            (Some(s), Some(e)) => s <= e,
            _ => true,
        };
        a && b
    }

    /// The interval as STAC API text (`a/b`, `../b`, `a/..`, or one instant).
    pub fn to_api_string(&self) -> String {
        match (self.start, self.end) {
            (Some(s), Some(e)) if s == e => format_rfc3339(s),
            (s, e) => format!(
                "{}/{}",
                s.map(format_rfc3339).unwrap_or_else(|| "..".into()),
                e.map(format_rfc3339).unwrap_or_else(|| "..".into())
            ),
        }
    }
}

/// Parses one end of a datetime param: a full RFC 3339 instant (returned as itself for both
/// bounds), or a `YYYY`, `YYYY-MM` or `YYYY-MM-DD` prefix (from its first second to its last, as
/// pystac-client expands it).
fn parse_bound(s: &str) -> Option<(i128, i128)> {
    if let Some(t) = parse_rfc3339(s) {
        return Some((t, t));
    }
    let (y, m0, m1, d0, d1) = match s.len() {
        4 => {
            let y = i64::from(digits(s, 4)?);
            (y, 1, 12, 1, 31)
        }
        7 if s.as_bytes()[4] == b'-' => {
            let y = i64::from(digits(s, 4)?);
            let m = digits(&s[5..], 2)?;
            if !(1..=12).contains(&m) {
                return None;
            }
            (y, m, m, 1, days_in_month(y, m))
        }
        10 => {
            let (y, m, d) = parse_date(s)?;
            (y, m, m, d, d)
        }
        _ => return None,
    };
    let start = i128::from(days_from_civil(y, m0, d0)) * 86_400 * NANOS_PER_SEC;
    let end = (i128::from(days_from_civil(y, m1, d1)) * 86_400 + 86_399) * NANOS_PER_SEC;
    Some((start, end))
}

/// Parses a datetime search param: an instant, a date (its whole day), `a/b`, `../b`, `a/..`.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_interval(s: &str) -> Result<Interval, String> {
    let s = s.trim();
    let bad = |part: &str| {
        format!("`{part}` is not an RFC 3339 date-time (e.g. 2021-07-01T00:00:00Z) or a date (2021-07-01)")
    };
    let open = |p: &str| p.is_empty() || p == "..";
    let interval = match s.split_once('/') {
        None => {
            if open(s) {
                return Err("datetime is empty".into());
            }
            let (a, b) = parse_bound(s).ok_or_else(|| bad(s))?;
            Interval {
                start: Some(a),
                end: Some(b),
            }
        }
        Some((a, b)) => {
            if b.contains('/') {
                return Err(format!("`{s}` has more than one `/`"));
            }
            let start = if open(a) {
                None
            } else {
                Some(parse_bound(a).ok_or_else(|| bad(a))?.0)
            };
            let end = if open(b) {
                None
            } else {
                Some(parse_bound(b).ok_or_else(|| bad(b))?.1)
            };
            if start.is_none() && end.is_none() {
                return Err(
                    "both ends of the interval are open; leave datetime out instead".into(),
                );
            }
            Interval { start, end }
        }
    };
    if let (Some(a), Some(b)) = (interval.start, interval.end) {
        if a > b {
            return Err(format!("the interval `{s}` ends before it starts"));
        }
    }
    Ok(interval)
}

/// The temporal extent of a STAC item: `datetime`, or `start_datetime`/`end_datetime`.
pub fn item_interval(item: &serde_json::Value) -> Option<Interval> {
    let props = item.get("properties")?;
    let get = |k: &str| {
        props
            .get(k)
            .and_then(|v| v.as_str())
            .and_then(parse_rfc3339)
    };
    let dt = get("datetime");
    let start = get("start_datetime").or(dt);
    let end = get("end_datetime").or(dt);
    if start.is_none() && end.is_none() {
        return None;
    }
    Some(Interval {
        start: start.or(end),
        end: end.or(start),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2021-07-01T10:20:30.5Z",
            "1969-12-31T23:59:59.000000001Z",
            "2024-02-29T12:00:00Z",
        ] {
            assert_eq!(format_rfc3339(parse_rfc3339(s).unwrap()), s);
        }
        assert_eq!(
            parse_rfc3339("2021-07-01T12:00:00+02:00"),
            parse_rfc3339("2021-07-01T10:00:00Z")
        );
        assert!(parse_rfc3339("2021-02-30T00:00:00Z").is_none());
        assert!(parse_rfc3339("2021-07-01").is_none());
        assert!(parse_rfc3339("2021-07-01T10:00:00").is_none());
        assert!(parse_rfc3339("2021-07-01T10:00:00ZZ").is_none());
        assert!(parse_rfc3339("2021-07-01T10:00:00.Z").is_none());
        assert!(parse_rfc3339("ééééééééééééééééééééé").is_none());
    }

    #[test]
    fn intervals() {
        let i = parse_interval("2021-07-01/2021-08-30").unwrap();
        assert_eq!(
            i.to_api_string(),
            "2021-07-01T00:00:00Z/2021-08-30T23:59:59Z"
        );
        let i = parse_interval("../2021-08").unwrap();
        assert_eq!(i.to_api_string(), "../2021-08-31T23:59:59Z");
        let i = parse_interval("2021/..").unwrap();
        assert_eq!(i.to_api_string(), "2021-01-01T00:00:00Z/..");
        let i = parse_interval("2021-07-01T10:00:00Z").unwrap();
        assert_eq!(i.to_api_string(), "2021-07-01T10:00:00Z");
        assert!(parse_interval("2021-08-01/2021-07-01").is_err());
        assert!(parse_interval("yesterday").is_err());
        assert!(parse_interval("../..").is_err());
        assert!(parse_interval("a/b/c").is_err());
    }
}
