//! A CQL2-JSON subset, evaluated on items of static catalogs.
//!
//! Supported: `and`, `or`, `not`, `=`, `<>`, `<`, `<=`, `>`, `>=`, `in`, `between`, `like`,
//! `isNull`, `s_intersects`, `t_intersects`; operands are property references
//! (`{"property": "eo:cloud_cover"}`), numbers, strings, booleans, `{"timestamp": ...}`,
//! `{"date": ...}`, `{"interval": [a, b]}`, GeoJSON geometries and `{"bbox": [...]}`.
//! Logic is three-valued: a comparison with a missing property is unknown, and only `true`
//! selects an item. `datetime` is the item's temporal extent (`datetime`, or
//! `start_datetime`..`end_datetime`), as STAC API servers such as pgstac read it.
//!
//! Evaluated here rather than with the `cql2` crate (0.6): that crate has no features to leave
//! out its SQL parser (`sqlparser`), its JSON-schema validator (`jsonschema`, with two regex
//! engines) and its WKT stack (`geozero`, `wkt`), which would add some 70 crates and several
//! CPU-minutes to a cold build of this crate; and its evaluator reads `datetime` as the bare
//! property, so an item with only `start_datetime`/`end_datetime` would be unknown.

use std::cmp::Ordering;

use geo::Intersects;
use serde_json::Value as Json;

use super::filter::{compare, item_value, Scalar};
use crate::datetime::{self, Interval};
use crate::geometry;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// An operand: a property of the item or a literal.
#[derive(Debug, Clone)]
pub enum Operand {
    /// `{"property": name}`.
    Property(String),
    /// A literal value.
    Literal(Scalar),
}

/// A parsed CQL2 expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A literal `true` / `false`.
    Bool(bool),
    /// All of.
    And(Vec<Expr>),
    /// Any of.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A binary comparison.
    Cmp(CmpOp, Operand, Operand),
    /// Membership in a list.
    In(Operand, Vec<Operand>),
    /// `lo <= v <= hi`.
    Between(Operand, Operand, Operand),
    /// SQL LIKE with `%` and `_`.
    Like(Operand, Operand),
    /// The operand is null or missing.
    IsNull(Operand),
    /// Spatial intersection.
    SIntersects(Operand, Operand),
    /// Temporal intersection.
    TIntersects(Operand, Operand),
}

fn args<'a>(
    obj: &'a serde_json::Map<String, Json>,
    op: &str,
    n: Option<usize>,
) -> Result<&'a [Json], String> {
    let a = obj
        .get("args")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("`{op}` needs an `args` array"))?;
    match n {
        Some(n) if a.len() != n => Err(format!("`{op}` takes {n} arguments, not {}", a.len())),
        None if a.is_empty() => Err(format!("`{op}` needs at least one argument")),
        _ => Ok(a),
    }
}

fn time_literal(s: &str) -> Result<Interval, String> {
    datetime::parse_interval(s).map_err(|e| format!("bad temporal literal: {e}"))
}

fn operand(v: &Json) -> Result<Operand, String> {
    Ok(match v {
        Json::Object(o) => {
            if let Some(p) = o.get("property") {
                Operand::Property(p.as_str().ok_or("`property` must be a string")?.to_string())
            } else if let Some(t) = o.get("timestamp").or_else(|| o.get("date")) {
                let t = t.as_str().ok_or("`timestamp` must be a string")?;
                Operand::Literal(Scalar::Time(time_literal(t)?))
            } else if let Some(i) = o.get("interval") {
                let a = i
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .ok_or("`interval` takes two strings")?;
                let end = |v: &Json, first: bool| -> Result<Option<jiff::Timestamp>, String> {
                    match v {
                        Json::String(s) if s == ".." => Ok(None),
                        Json::String(s) => {
                            let t = time_literal(s)?;
                            Ok(if first { t.start } else { t.end })
                        }
                        Json::Object(_) => match operand(v)? {
                            Operand::Literal(Scalar::Time(t)) => {
                                Ok(if first { t.start } else { t.end })
                            }
                            _ => Err("an interval holds instants".into()),
                        },
                        _ => Err("an interval holds instants".into()),
                    }
                };
                Operand::Literal(Scalar::Time(Interval {
                    start: end(&a[0], true)?,
                    end: end(&a[1], false)?,
                }))
            } else if let Some(b) = o.get("bbox") {
                let b: Vec<f64> = b
                    .as_array()
                    .ok_or("`bbox` must be an array")?
                    .iter()
                    .map(|x| x.as_f64().ok_or("`bbox` must hold numbers"))
                    .collect::<Result<_, _>>()?;
                Operand::Literal(Scalar::Geom(Box::new(geometry::bbox_geometry(&b)?)))
            } else if o.contains_key("type") {
                Operand::Literal(Scalar::Geom(Box::new(geometry::to_geometry(v)?)))
            } else if let Some(op) = o.get("op").and_then(Json::as_str) {
                return Err(format!(
                    "`{op}` is not supported as an operand in this CQL2 subset"
                ));
            } else {
                return Err(format!("unsupported CQL2 operand {v}"));
            }
        }
        Json::Array(a) => Operand::Literal(Scalar::List(
            a.iter()
                .map(|x| match operand(x)? {
                    Operand::Literal(s) => Ok(s),
                    Operand::Property(_) => {
                        Err("lists of properties are not supported".to_string())
                    }
                })
                .collect::<Result<_, _>>()?,
        )),
        other => Operand::Literal(Scalar::from_json(other)),
    })
}

/// Parses a CQL2-JSON expression.
///
/// # Errors
/// A message naming the unsupported or malformed part.
pub fn parse(v: &Json) -> Result<Expr, String> {
    let obj = match v {
        Json::Bool(b) => return Ok(Expr::Bool(*b)),
        Json::Object(o) => o,
        _ => {
            return Err(format!(
                "a CQL2 expression is an object with `op` and `args`, not {v}"
            ))
        }
    };
    let op = obj
        .get("op")
        .and_then(Json::as_str)
        .ok_or("a CQL2 expression needs an `op` string")?;
    let lower = op.to_ascii_lowercase();
    let cmp = |c: CmpOp| -> Result<Expr, String> {
        let a = args(obj, op, Some(2))?;
        Ok(Expr::Cmp(c, operand(&a[0])?, operand(&a[1])?))
    };
    Ok(match lower.as_str() {
        "and" | "or" => {
            let parts = args(obj, op, None)?.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
            if lower == "and" {
                Expr::And(parts)
            } else {
                Expr::Or(parts)
            }
        }
        "not" => Expr::Not(Box::new(parse(&args(obj, op, Some(1))?[0])?)),
        "=" => cmp(CmpOp::Eq)?,
        "<>" | "!=" => cmp(CmpOp::Ne)?,
        "<" => cmp(CmpOp::Lt)?,
        "<=" => cmp(CmpOp::Le)?,
        ">" => cmp(CmpOp::Gt)?,
        ">=" => cmp(CmpOp::Ge)?,
        "in" => {
            let a = args(obj, op, Some(2))?;
            let list = a[1].as_array().ok_or("the second argument of `in` must be an array")?;
            Expr::In(operand(&a[0])?, list.iter().map(operand).collect::<Result<_, _>>()?)
        }
        "between" => {
            let a = args(obj, op, None)?;
            match a {
                [v, lo, hi] => Expr::Between(operand(v)?, operand(lo)?, operand(hi)?),
                [v, Json::Array(r)] if r.len() == 2 => Expr::Between(operand(v)?, operand(&r[0])?, operand(&r[1])?),
                _ => return Err("`between` takes a value, a lower and an upper bound".into()),
            }
        }
        "like" => {
            let a = args(obj, op, Some(2))?;
            Expr::Like(operand(&a[0])?, operand(&a[1])?)
        }
        "isnull" => Expr::IsNull(operand(&args(obj, op, Some(1))?[0])?),
        "s_intersects" => {
            let a = args(obj, op, Some(2))?;
            Expr::SIntersects(operand(&a[0])?, operand(&a[1])?)
        }
        "t_intersects" => {
            let a = args(obj, op, Some(2))?;
            Expr::TIntersects(operand(&a[0])?, operand(&a[1])?)
        }
        _ => {
            return Err(format!(
                "CQL2 operator `{op}` is not supported on static catalogs (and, or, not, =, <>, <, <=, >, >=, in, between, like, isNull, s_intersects, t_intersects)"
            ))
        }
    })
}

fn value(o: &Operand, item: &Json) -> Scalar {
    match o {
        Operand::Property(p) => item_value(item, p),
        Operand::Literal(s) => s.clone(),
    }
}

fn as_interval(s: &Scalar) -> Option<Interval> {
    match s {
        Scalar::Time(t) => Some(*t),
        Scalar::Str(x) => datetime::parse_interval(x).ok(),
        _ => None,
    }
}

/// SQL LIKE: `%` any run, `_` one character, `\` escapes.
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some(('\\', rest)) if !rest.is_empty() => {
                t.first() == Some(&rest[0]) && go(&t[1..], &rest[1..])
            }
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&t, &p)
}

impl Expr {
    /// Evaluates on `item`: `Some(true)`, `Some(false)`, or `None` (unknown).
    pub fn eval(&self, item: &Json) -> Option<bool> {
        match self {
            Expr::Bool(b) => Some(*b),
            Expr::And(parts) => {
                let mut unknown = false;
                for p in parts {
                    match p.eval(item) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                (!unknown).then_some(true)
            }
            Expr::Or(parts) => {
                let mut unknown = false;
                for p in parts {
                    match p.eval(item) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                (!unknown).then_some(false)
            }
            Expr::Not(e) => e.eval(item).map(|b| !b),
            Expr::Cmp(op, a, b) => {
                let o = compare(&value(a, item), &value(b, item))?;
                Some(match op {
                    CmpOp::Eq => o == Ordering::Equal,
                    CmpOp::Ne => o != Ordering::Equal,
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::Le => o != Ordering::Greater,
                    CmpOp::Gt => o == Ordering::Greater,
                    CmpOp::Ge => o != Ordering::Less,
                })
            }
            Expr::In(a, list) => {
                let v = value(a, item);
                if matches!(v, Scalar::Null) {
                    return None;
                }
                Some(
                    list.iter()
                        .any(|o| compare(&v, &value(o, item)) == Some(Ordering::Equal)),
                )
            }
            Expr::Between(v, lo, hi) => {
                let v = value(v, item);
                let a = compare(&value(lo, item), &v)?;
                let b = compare(&v, &value(hi, item))?;
                Some(a != Ordering::Greater && b != Ordering::Greater)
            }
            Expr::Like(a, p) => match (value(a, item), value(p, item)) {
                (Scalar::Str(t), Scalar::Str(p)) => Some(like(&t, &p)),
                _ => None,
            },
            Expr::IsNull(a) => Some(matches!(value(a, item), Scalar::Null)),
            Expr::SIntersects(a, b) => match (value(a, item), value(b, item)) {
                (Scalar::Geom(x), Scalar::Geom(y)) => Some(x.intersects(y.as_ref())),
                _ => None,
            },
            Expr::TIntersects(a, b) => {
                let (x, y) = (as_interval(&value(a, item))?, as_interval(&value(b, item))?);
                Some(x.overlaps(&y))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates() {
        let item = json!({"id": "S2A_x", "collection": "s2", "geometry": {"type": "Point", "coordinates": [1, 1]},
            "properties": {"eo:cloud_cover": 4, "datetime": "2021-07-10T10:00:00Z", "platform": "sentinel-2a"}});
        let t = |f: Json| parse(&f).unwrap().eval(&item);
        let cc = json!({"property": "eo:cloud_cover"});
        assert_eq!(t(json!({"op": "<", "args": [cc, 5]})), Some(true));
        assert_eq!(
            t(json!({"op": "not", "args": [{"op": "<", "args": [cc, 5]}]})),
            Some(false)
        );
        assert_eq!(t(json!({"op": "between", "args": [cc, 4, 6]})), Some(true));
        assert_eq!(
            t(
                json!({"op": "in", "args": [{"property": "platform"}, ["sentinel-2b", "sentinel-2a"]]})
            ),
            Some(true)
        );
        assert_eq!(
            t(json!({"op": "like", "args": [{"property": "id"}, "S2_\\_%"]})),
            Some(true)
        );
        assert_eq!(
            t(json!({"op": "=", "args": [{"property": "missing"}, 1]})),
            None
        );
        assert_eq!(
            t(
                json!({"op": "or", "args": [{"op": "=", "args": [{"property": "missing"}, 1]}, true]})
            ),
            Some(true)
        );
        assert_eq!(
            t(json!({"op": "isNull", "args": [{"property": "missing"}]})),
            Some(true)
        );
        assert_eq!(
            t(
                json!({"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [0, 0, 2, 2]}]})
            ),
            Some(true)
        );
        assert_eq!(
            t(
                json!({"op": "t_intersects", "args": [{"property": "datetime"}, {"interval": ["2021-07-01", "2021-07-09"]}]})
            ),
            Some(false)
        );
        assert_eq!(
            t(
                json!({"op": ">=", "args": [{"property": "datetime"}, {"timestamp": "2021-07-10T10:00:00Z"}]})
            ),
            Some(true)
        );
        assert!(parse(&json!({"op": "a_contains", "args": [1, 2]})).is_err());
        assert!(parse(&json!({"op": "=", "args": [1]})).is_err());
        assert!(parse(&json!("x")).is_err());
    }
}
