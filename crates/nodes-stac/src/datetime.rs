//! STAC datetime intervals over [`jiff::Timestamp`]: the `datetime` search param and the temporal
//! extent of an item.
//!
//! Instants are parsed and printed by jiff (RFC 3339, nanosecond precision, any UTC offset).
//! What jiff has no notion of, and what is kept here, is STAC's interval syntax (`a/b`, `../b`,
//! `a/..`) and the calendar periods that STAC clients accept for either end (`2021`, `2021-07`,
//! `2021-07-01`: from the first second of the period to its last, as pystac-client expands them).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Parses an RFC 3339 instant with its UTC offset (`2021-07-01T10:20:30.5Z`, `...+02:00`); a
/// space or lower-case `t`/`z` is accepted as RFC 3339 allows. A date or a date-time without an
/// offset is not an instant.
pub fn parse_instant(s: &str) -> Option<Timestamp> {
    s.trim().parse().ok()
}

/// A closed time interval; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// First instant, inclusive.
    pub start: Option<Timestamp>,
    /// Last instant, inclusive.
    pub end: Option<Timestamp>,
}

impl Interval {
    /// True when the two intervals share at least one instant.
    pub fn overlaps(&self, other: &Interval) -> bool {
        let before = |s: Option<Timestamp>, e: Option<Timestamp>| match (s, e) {
            (Some(s), Some(e)) => s <= e,
            _ => true,
        };
        before(self.start, other.end) && before(other.start, self.end)
    }

    /// The interval as STAC API text (`a/b`, `../b`, `a/..`, or one instant), in UTC.
    pub fn to_api_string(&self) -> String {
        let end = |t: Option<Timestamp>| t.map_or_else(|| "..".to_string(), |t| t.to_string());
        match (self.start, self.end) {
            (Some(s), Some(e)) if s == e => s.to_string(),
            (s, e) => format!("{}/{}", end(s), end(e)),
        }
    }
}

/// The first and last second of a calendar period written `YYYY`, `YYYY-MM` or `YYYY-MM-DD`
/// ([`flow_core::time::period`]).
fn calendar_period(s: &str) -> Option<(Timestamp, Timestamp)> {
    let (first, last) = flow_core::time::period(s)?;
    let utc = |d: Date, h: i8, m: i8, sec: i8| TimeZone::UTC.to_timestamp(d.at(h, m, sec, 0)).ok();
    Some((utc(first, 0, 0, 0)?, utc(last, 23, 59, 59)?))
}

/// One end of a datetime param: an instant (both bounds itself) or a calendar period.
fn parse_bound(s: &str) -> Option<(Timestamp, Timestamp)> {
    match parse_instant(s) {
        Some(t) => Some((t, t)),
        None => calendar_period(s),
    }
}

/// Parses a datetime search param: an instant or a period (`2021`, `2021-07`, `2021-07-01`,
/// each its whole span), `a/b`, `../b`, `a/..`.
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
            let (start, end) = parse_bound(s).ok_or_else(|| bad(s))?;
            Interval {
                start: Some(start),
                end: Some(end),
            }
        }
        Some((a, b)) => {
            if b.contains('/') {
                return Err(format!("`{s}` has more than one `/`"));
            }
            let bound = |p: &str| (!open(p)).then(|| parse_bound(p).ok_or_else(|| bad(p)));
            let start = bound(a).transpose()?.map(|(first, _)| first);
            let end = bound(b).transpose()?.map(|(_, last)| last);
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
            .and_then(parse_instant)
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
    fn instants_round_trip_in_utc() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2021-07-01T10:20:30.5Z",
            "1969-12-31T23:59:59.000000001Z",
            "2024-02-29T12:00:00Z",
        ] {
            assert_eq!(parse_instant(s).unwrap().to_string(), s);
        }
        assert_eq!(
            parse_instant("2021-07-01T12:00:00+02:00"),
            parse_instant("2021-07-01T10:00:00Z")
        );
        assert_eq!(
            parse_instant("2021-07-01t10:00:00z"),
            parse_instant("2021-07-01 10:00:00Z")
        );
        assert!(parse_instant("2021-02-30T00:00:00Z").is_none());
        assert!(parse_instant("2021-07-01").is_none());
        assert!(parse_instant("2021-07-01T10:00:00").is_none());
        assert!(parse_instant("2021-07-01T10:00:00ZZ").is_none());
        assert!(parse_instant("2021-07-01T10:00:00.Z").is_none());
        assert!(parse_instant("ééééééééééééééééééééé").is_none());
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
        let i = parse_interval("../2024-02").unwrap();
        assert_eq!(i.to_api_string(), "../2024-02-29T23:59:59Z");
        let i = parse_interval("2021/..").unwrap();
        assert_eq!(i.to_api_string(), "2021-01-01T00:00:00Z/..");
        let i = parse_interval("2021").unwrap();
        assert_eq!(
            i.to_api_string(),
            "2021-01-01T00:00:00Z/2021-12-31T23:59:59Z"
        );
        let i = parse_interval("2021-07-01T10:00:00Z").unwrap();
        assert_eq!(i.to_api_string(), "2021-07-01T10:00:00Z");
        let i = parse_interval("2021-07-01T12:00:00.25+02:00/..").unwrap();
        assert_eq!(i.to_api_string(), "2021-07-01T10:00:00.25Z/..");
        assert!(parse_interval("2021-08-01/2021-07-01").is_err());
        assert!(parse_interval("2021-13").is_err());
        assert!(parse_interval("2021-02-30").is_err());
        assert!(parse_interval("yesterday").is_err());
        assert!(parse_interval("../..").is_err());
        assert!(parse_interval("a/b/c").is_err());
        assert!(parse_interval("").is_err());
    }

    #[test]
    fn overlaps_and_item_extents() {
        let i = |s: &str| parse_interval(s).unwrap();
        assert!(i("2021-07").overlaps(&i("2021-07-31T23:00:00Z/..")));
        assert!(!i("2021-07").overlaps(&i("2021-08-01T00:00:00Z/..")));
        assert!(i("../2021-07-01").overlaps(&i("2021-07-01T23:59:59Z")));
        let item = serde_json::json!({"properties": {"datetime": null,
            "start_datetime": "2021-08-01T00:00:00Z", "end_datetime": "2021-08-31T23:59:59Z"}});
        assert_eq!(item_interval(&item), Some(i("2021-08")));
        let item = serde_json::json!({"properties": {"datetime": "2021-08-01T10:00:00+02:00"}});
        assert_eq!(item_interval(&item), Some(i("2021-08-01T08:00:00Z")));
        assert_eq!(item_interval(&serde_json::json!({"properties": {}})), None);
    }
}
