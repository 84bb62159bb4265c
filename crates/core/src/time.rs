//! Time steps chosen by date and named by date.
//!
//! `stack`, `composite` and `flatten` choose time steps with the same two params, as xarray's
//! `.sel(time=...)` does ([`DateSelection::from_params`]):
//!
//! - `time = "2021-07-15"`: the steps whose timestamp falls on that UTC day; `"2021-07"` a
//!   month, `"2021"` a year, an RFC 3339 instant (`"2021-07-15T15:49:11Z"`) that instant;
//! - `time = "2021-07-01/2021-07-31"`: an inclusive range, either end open (`"../2021-07-31"`,
//!   `"2021-07-01/.."`), written as STAC's `datetime`;
//! - `times = ["2021-07-05", "2021-07-15"]`: the steps any of these dates or ranges selects.
//!
//! A time step is known by its label ([`crate::Raster::times`]): an RFC 3339 instant, or the
//! span `first/last` of a composite, which is selected when the whole span is. Selected steps
//! keep their time order. A label that is not a date-time is never selected.
//!
//! [`step_names`] names time steps in feature names (`B04@2021-07-15`).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::ParamError;

/// A time span, `[start, end)`; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: Option<Timestamp>,
    end: Option<Timestamp>,
}

impl Span {
    /// Whether `other` lies wholly within this span.
    fn contains(&self, other: &Span) -> bool {
        let after_start = match (self.start, other.start) {
            (None, _) => true,
            (Some(a), Some(b)) => a <= b,
            (Some(_), None) => false,
        };
        let before_end = match (self.end, other.end) {
            (None, _) => true,
            (Some(a), Some(b)) => b <= a,
            (Some(_), None) => false,
        };
        after_start && before_end
    }
}

/// Time steps chosen by date: the union of one or more dates or ranges, as the recipe wrote
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateSelection {
    spans: Vec<Span>,
    /// `time = "..."` or `times = [...]`, for messages.
    written: String,
}

/// The first and last day of a calendar period written `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
pub fn period(s: &str) -> Option<(Date, Date)> {
    let number = |part: &str| -> Option<i16> {
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    match s.len() {
        4 => {
            let year = number(s)?;
            Some((Date::new(year, 1, 1).ok()?, Date::new(year, 12, 31).ok()?))
        }
        7 if s.as_bytes()[4] == b'-' => {
            let month = i8::try_from(number(s.get(5..)?)?).ok()?;
            let first = Date::new(number(s.get(..4)?)?, month, 1).ok()?;
            Some((first, first.last_of_month()))
        }
        10 => {
            let day: Date = s.parse().ok()?;
            Some((day, day))
        }
        _ => None,
    }
}

/// Midnight UTC at the start of `day`.
fn midnight(day: Date) -> Option<Timestamp> {
    day.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// The span of an instant (itself alone) or a calendar period (its whole days).
fn bound(s: &str) -> Option<Span> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(Span {
            start: Some(t),
            end: Some(t.checked_add(SignedDuration::from_nanos(1)).ok()?),
        });
    }
    let (first, last) = period(s)?;
    Some(Span {
        start: Some(midnight(first)?),
        end: Some(midnight(last.tomorrow().ok()?)?),
    })
}

/// Parses one date or range: `2021-07-15`, `2021-07`, `2021`, an RFC 3339 instant, or `a/b` of
/// those with `..` (or nothing) for an open end.
fn parse_span(text: &str) -> Result<Span, String> {
    let s = text.trim();
    let bad = |part: &str| {
        format!(
            "`{part}` is not a date (2021-07-15, or a month 2021-07, or a year 2021) or an RFC \
             3339 date-time (2021-07-15T10:00:00Z)"
        )
    };
    let open = |p: &str| p.is_empty() || p == "..";
    match s.split_once('/') {
        None if open(s) => Err("the date is empty".into()),
        None => bound(s).ok_or_else(|| bad(s)),
        Some((_, b)) if b.contains('/') => Err(format!("`{s}` has more than one `/`")),
        Some((a, b)) => {
            let (a, b) = (a.trim(), b.trim());
            if open(a) && open(b) {
                return Err(format!(
                    "`{s}`: both ends of the range are open; leave the selection out instead"
                ));
            }
            let end = |p: &str| {
                (!open(p))
                    .then(|| bound(p).ok_or_else(|| bad(p)))
                    .transpose()
            };
            let span = Span {
                start: end(a)?.and_then(|x| x.start),
                end: end(b)?.and_then(|x| x.end),
            };
            if let (Some(x), Some(y)) = (span.start, span.end) {
                if x >= y {
                    return Err(format!("the range `{s}` ends before it starts"));
                }
            }
            Ok(span)
        }
    }
}

/// The span of a time step labelled `label`: an instant, or `first/last` of two instants.
fn step_span(label: &str) -> Option<Span> {
    let instant = |s: &str| s.trim().parse::<Timestamp>().ok();
    let (first, last) = match label.split_once('/') {
        Some((a, b)) => (instant(a)?, instant(b)?),
        None => {
            let t = instant(label)?;
            (t, t)
        }
    };
    Some(Span {
        start: Some(first),
        end: Some(last.checked_add(SignedDuration::from_nanos(1)).ok()?),
    })
}

/// The UTC date of an instant.
fn utc_day(t: Timestamp) -> Date {
    t.to_zoned(TimeZone::UTC).date()
}

impl DateSelection {
    /// One date or range (see the module's doc).
    ///
    /// # Errors
    /// A message saying what is wrong with `text`.
    pub fn parse(text: &str) -> Result<DateSelection, String> {
        Ok(DateSelection {
            spans: vec![parse_span(text)?],
            written: format!("time = \"{text}\""),
        })
    }

    /// Any of several dates or ranges.
    ///
    /// # Errors
    /// A message naming the entry that is wrong, or saying that the list is empty.
    pub fn parse_list(list: &[String]) -> Result<DateSelection, String> {
        if list.is_empty() {
            return Err("the list of dates is empty".into());
        }
        let spans = list
            .iter()
            .map(|t| parse_span(t))
            .collect::<Result<Vec<_>, _>>()?;
        let quoted: Vec<String> = list.iter().map(|t| format!("\"{t}\"")).collect();
        Ok(DateSelection {
            spans,
            written: format!("times = [{}]", quoted.join(", ")),
        })
    }

    /// The selection the params `time` and `times` of a node say, `None` when neither is given.
    ///
    /// # Errors
    /// A [`ParamError`] on `time` or `times` when a date is malformed, the list is empty, or
    /// both are given.
    pub fn from_params(
        time: Option<&str>,
        times: Option<&[String]>,
    ) -> Result<Option<DateSelection>, ParamError> {
        match (time, times) {
            (Some(_), Some(_)) => Err(ParamError::new(
                "times",
                "give either `time` (one date or range) or `times` (a list), not both",
            )),
            (Some(t), None) => DateSelection::parse(t)
                .map(Some)
                .map_err(|e| ParamError::new("time", e).with_help(HELP)),
            (None, Some(list)) => DateSelection::parse_list(list)
                .map(Some)
                .map_err(|e| ParamError::new("times", e).with_help(HELP)),
            (None, None) => Ok(None),
        }
    }

    /// The selection as the recipe wrote it: `time = "2021-07-15"`, `times = ["...", "..."]`.
    pub fn written(&self) -> &str {
        &self.written
    }

    /// Whether the time step labelled `label` is selected.
    pub fn selects(&self, label: &str) -> bool {
        step_span(label).is_some_and(|step| self.spans.iter().any(|s| s.contains(&step)))
    }

    /// The indices of the selected steps among `labels`, in their order.
    pub fn select(&self, labels: &[String]) -> Vec<usize> {
        (0..labels.len())
            .filter(|&i| self.selects(&labels[i]))
            .collect()
    }

    /// [`DateSelection::select`] of time steps, refusing a selection that keeps nothing.
    ///
    /// # Errors
    /// A message for `node` (a kind, as `flatten`) naming the selection and the dates of
    /// `labels`.
    pub fn select_some(&self, node: &str, labels: &[String]) -> Result<Vec<usize>, String> {
        self.select_some_of(node, "time step(s)", labels)
    }

    /// [`DateSelection::select_some`] of things other than time steps (`"item(s)"`).
    ///
    /// # Errors
    /// As [`DateSelection::select_some`].
    pub fn select_some_of(
        &self,
        node: &str,
        things: &str,
        labels: &[String],
    ) -> Result<Vec<usize>, String> {
        let chosen = self.select(labels);
        if chosen.is_empty() {
            return Err(format!(
                "{node}: `{}` selects none of the {} {things}; the dates available: {}",
                self.written,
                labels.len(),
                available(labels)
            ));
        }
        Ok(chosen)
    }
}

/// How the params are written, for the help of a malformed date.
const HELP: &str = "write a date \"2021-07-15\" (that UTC day), a month \"2021-07\", a range \
                    \"2021-07-01/2021-07-31\" (inclusive; \"../2021-07-31\" for an open start), \
                    or a list `times = [\"2021-07-05\", \"2021-07-15\"]`";

/// The distinct dates of `labels`, in order, for messages: UTC dates of instants, spans as
/// `first/last` dates, other labels as they are (`none` when there are no labels).
pub fn available(labels: &[String]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for label in labels {
        let name = date_name(label).unwrap_or_else(|| format!("`{label}`"));
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    if seen.is_empty() {
        return "none".into();
    }
    const SHOWN: usize = 20;
    if seen.len() > SHOWN {
        let more = seen.len() - SHOWN;
        seen.truncate(SHOWN);
        return format!("{} and {more} more", seen.join(", "));
    }
    seen.join(", ")
}

/// A time step's label as a date: the UTC date of an instant (`2021-07-15`), the dates of a
/// span (`2021-07-14/2021-08-03`, or one date when both ends fall on it).
fn date_name(label: &str) -> Option<String> {
    let span = step_span(label)?;
    let first = utc_day(span.start?);
    let last = utc_day(span.end?.checked_sub(SignedDuration::from_nanos(1)).ok()?);
    Some(if first == last {
        first.to_string()
    } else {
        format!("{first}/{last}")
    })
}

/// A time step's label as an instant in UTC (`2021-07-15T15:49:11Z`), spans as `first/last`.
fn instant_name(label: &str) -> Option<String> {
    match label.split_once('/') {
        Some((a, b)) => Some(format!(
            "{}/{}",
            a.trim().parse::<Timestamp>().ok()?,
            b.trim().parse::<Timestamp>().ok()?
        )),
        None => Some(label.trim().parse::<Timestamp>().ok()?.to_string()),
    }
}

/// Names for the time steps labelled `labels`, unique among them, as feature names append them
/// (`B04@2021-07-15`): the UTC date; the UTC date and time for steps that share a date
/// (`2021-08-03T15:49:09Z`); `t` and the index (`t3`) for steps still alike or whose label is
/// not a date-time.
pub fn step_names(labels: &[String]) -> Vec<String> {
    let count = |names: &[Option<String>], name: &Option<String>| {
        name.is_some() && names.iter().filter(|n| *n == name).count() > 1
    };
    let dates: Vec<Option<String>> = labels.iter().map(|l| date_name(l)).collect();
    let instants: Vec<Option<String>> = labels
        .iter()
        .zip(&dates)
        .map(|(l, d)| {
            if count(&dates, d) {
                instant_name(l)
            } else {
                d.clone()
            }
        })
        .collect();
    instants
        .iter()
        .enumerate()
        .map(|(i, name)| match name {
            Some(n) if !count(&instants, name) => n.clone(),
            _ => format!("t{i}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn sel(s: &str) -> DateSelection {
        DateSelection::parse(s).unwrap()
    }

    const THREE: [&str; 3] = [
        "2021-07-14T15:49:11Z",
        "2021-07-20T00:00:00Z",
        "2021-08-03T23:59:59.999Z",
    ];

    #[test]
    fn a_date_selects_its_whole_utc_day() {
        let l = labels(&THREE);
        assert_eq!(sel("2021-07-14").select(&l), [0]);
        assert_eq!(sel("2021-07-20").select(&l), [1]);
        assert_eq!(sel("2021-08-03").select(&l), [2]);
        assert_eq!(sel("2021-07-15").select(&l), [] as [usize; 0]);
        // Offsets are converted: 01:00+02:00 is the previous UTC day.
        assert!(sel("2021-07-19").selects("2021-07-20T01:00:00+02:00"));
        assert!(!sel("2021-07-20").selects("2021-07-20T01:00:00+02:00"));
        assert_eq!(sel("2021-07").select(&l), [0, 1]);
        assert_eq!(sel("2021").select(&l), [0, 1, 2]);
        assert_eq!(sel("2021-07-14T15:49:11Z").select(&l), [0]);
        assert_eq!(sel("2021-07-14T15:49:12Z").select(&l), [] as [usize; 0]);
    }

    #[test]
    fn ranges_are_inclusive_and_may_be_open() {
        let l = labels(&THREE);
        assert_eq!(sel("2021-07-14/2021-07-20").select(&l), [0, 1]);
        assert_eq!(sel("2021-07-15/2021-08-03").select(&l), [1, 2]);
        assert_eq!(sel("../2021-07-20").select(&l), [0, 1]);
        assert_eq!(sel("2021-07-20/..").select(&l), [1, 2]);
        assert_eq!(sel("2021-07-20/").select(&l), [1, 2]);
        assert_eq!(sel("2021-07-14T15:49:11Z/2021-07-20").select(&l), [0, 1]);
        assert_eq!(sel("2021-07-14T15:49:12Z/2021-07-20").select(&l), [1]);
        assert_eq!(sel("2021-07-20/2021-07-20").select(&l), [1]);
        let list = DateSelection::parse_list(&labels(&["2021-08-03", "2021-07-14"])).unwrap();
        assert_eq!(list.select(&l), [0, 2], "in time order");
        assert_eq!(list.written(), "times = [\"2021-08-03\", \"2021-07-14\"]");
    }

    #[test]
    fn a_span_is_selected_when_wholly_inside() {
        let span = "2021-07-14T15:49:11Z/2021-08-03T15:49:09Z";
        assert!(sel("2021-07-14/2021-08-03").selects(span));
        assert!(sel("2021").selects(span));
        assert!(!sel("2021-07").selects(span));
        assert!(!sel("2021-07-14").selects(span));
        assert!(!sel("2021").selects("not a date"));
        assert!(!sel("2021").selects(""));
    }

    #[test]
    fn malformed_selections_are_refused() {
        for bad in [
            "",
            "..",
            "../..",
            "2021-07-32",
            "2021-13",
            "2021-02-29",
            "21-07-01",
            "yesterday",
            "2021-07-01/2021-06-30",
            "2021-07-01/2021-07-02/2021-07-03",
            "2021-07-01T25:00:00Z",
            "2021-07-01T10:00:00",
        ] {
            assert!(DateSelection::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DateSelection::parse_list(&[]).is_err());
        assert!(DateSelection::parse_list(&labels(&["2021-07-01", "x"])).is_err());
        let e = DateSelection::from_params(Some("2021-07-32"), None).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("time"));
        assert!(e.message.contains("`2021-07-32` is not a date"), "{e}");
        let list = labels(&["2021-07-01", "2021-7-2"]);
        let e = DateSelection::from_params(None, Some(&list)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("times"));
        assert!(e.message.contains("2021-7-2"), "{e}");
        let e = DateSelection::from_params(Some("2021"), Some(&list)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("times"));
        assert_eq!(DateSelection::from_params(None, None), Ok(None));
    }

    #[test]
    fn nothing_selected_names_the_dates_available() {
        let l = labels(&[
            "2021-07-14T15:49:11Z",
            "2021-08-03T15:49:09Z",
            "2021-08-03T16:00:00Z",
        ]);
        let e = sel("2021-07-15").select_some("stack", &l).unwrap_err();
        assert_eq!(
            e,
            "stack: `time = \"2021-07-15\"` selects none of the 3 time step(s); the dates \
             available: 2021-07-14, 2021-08-03"
        );
        assert_eq!(sel("2021-08-03").select_some("stack", &l), Ok(vec![1, 2]));
        assert_eq!(available(&[]), "none");
        assert_eq!(available(&labels(&["x"])), "`x`");
        let many: Vec<String> = (1..=25)
            .map(|d| format!("2021-07-{d:02}T10:00:00Z"))
            .collect();
        assert!(available(&many).ends_with("2021-07-20 and 5 more"));
    }

    #[test]
    fn steps_are_named_by_date_then_time_then_index() {
        assert_eq!(
            step_names(&labels(&[
                "2021-07-14T15:49:11Z",
                "2021-08-03T15:49:09+00:00"
            ])),
            ["2021-07-14", "2021-08-03"]
        );
        // Two steps of one date get their time; two of one instant, their index.
        assert_eq!(
            step_names(&labels(&[
                "2021-07-14T15:49:11Z",
                "2021-08-03T15:49:09Z",
                "2021-08-03T17:49:09+02:00",
                "2021-08-03T16:00:00Z",
            ])),
            ["2021-07-14", "t1", "t2", "2021-08-03T16:00:00Z"]
        );
        assert_eq!(
            step_names(&labels(&["", "", "2021-07-14T15:49:11Z"])),
            ["t0", "t1", "2021-07-14"]
        );
        assert_eq!(
            step_names(&labels(&[
                "2021-07-14T15:49:11Z/2021-08-03T15:49:09Z",
                "2021-08-13T10:00:00Z"
            ])),
            ["2021-07-14/2021-08-03", "2021-08-13"]
        );
    }

    #[test]
    fn periods() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert_eq!(period("2024-02"), Some((d("2024-02-01"), d("2024-02-29"))));
        assert_eq!(period("2021"), Some((d("2021-01-01"), d("2021-12-31"))));
        assert_eq!(
            period("2021-07-15"),
            Some((d("2021-07-15"), d("2021-07-15")))
        );
        assert_eq!(period("2021-7"), None);
        assert_eq!(period("2021é"), None);
        assert_eq!(period("ééé"), None);
    }
}
