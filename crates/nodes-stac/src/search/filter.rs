//! Search filters applied locally (static catalogs), the query extension, sortby, and the
//! comparisons that the query extension and CQL2 share.

use std::cmp::Ordering;

use geo::{Geometry, Intersects};
use serde_json::Value as Json;

use super::cql2;
use crate::datetime::{self, Interval};
use crate::geometry;

/// A scalar seen by a comparison.
#[derive(Debug, Clone)]
pub enum Scalar {
    /// Missing or null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string (compared as instants when both sides are RFC 3339).
    Str(String),
    /// An instant or interval.
    Time(Interval),
    /// A geometry.
    Geom(Box<Geometry<f64>>),
    /// An array.
    List(Vec<Scalar>),
}

impl Scalar {
    /// A JSON value as a scalar.
    pub fn from_json(v: &Json) -> Scalar {
        match v {
            Json::Null => Scalar::Null,
            Json::Bool(b) => Scalar::Bool(*b),
            Json::Number(n) => n.as_f64().map_or(Scalar::Null, Scalar::Num),
            Json::String(s) => Scalar::Str(s.clone()),
            Json::Array(a) => Scalar::List(a.iter().map(Scalar::from_json).collect()),
            Json::Object(_) => Scalar::Null,
        }
    }

    fn as_time(&self) -> Option<Interval> {
        match self {
            Scalar::Time(t) => Some(*t),
            Scalar::Str(s) => datetime::parse_instant(s).map(|t| Interval {
                start: Some(t),
                end: Some(t),
            }),
            _ => None,
        }
    }
}

/// Compares two scalars; `None` when either is null or they cannot be compared.
pub fn compare(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Null, _) | (_, Scalar::Null) => None,
        (Scalar::Num(x), Scalar::Num(y)) => x.partial_cmp(y),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
        (Scalar::Str(x), Scalar::Str(y)) => match (a.as_time(), b.as_time()) {
            (Some(s), Some(t)) => Some(s.start.cmp(&t.start)),
            _ => Some(x.cmp(y)),
        },
        (Scalar::Time(_), _) | (_, Scalar::Time(_)) => {
            let (s, t) = (a.as_time()?, b.as_time()?);
            Some(s.start.cmp(&t.start).then(s.end.cmp(&t.end)))
        }
        _ => None,
    }
}

/// The value of `name` on an item: `id`, `collection`, `geometry`, `datetime` (the item's
/// temporal extent) or a property (a `properties.` prefix is accepted).
pub fn item_value(item: &Json, name: &str) -> Scalar {
    let name = name.strip_prefix("properties.").unwrap_or(name);
    match name {
        "id" | "collection" => item.get(name).map_or(Scalar::Null, Scalar::from_json),
        "geometry" => {
            geometry::item_footprint(item).map_or(Scalar::Null, |g| Scalar::Geom(Box::new(g)))
        }
        "datetime" => datetime::item_interval(item).map_or(Scalar::Null, Scalar::Time),
        _ => item
            .get("properties")
            .and_then(|p| p.get(name))
            .map_or(Scalar::Null, Scalar::from_json),
    }
}

/// An operator of the STAC query extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryOp {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// One of a list.
    In,
    /// String prefix.
    StartsWith,
    /// String suffix.
    EndsWith,
    /// Substring.
    Contains,
}

impl QueryOp {
    fn parse(s: &str) -> Option<QueryOp> {
        Some(match s {
            "eq" => QueryOp::Eq,
            "neq" => QueryOp::Neq,
            "lt" => QueryOp::Lt,
            "lte" => QueryOp::Lte,
            "gt" => QueryOp::Gt,
            "gte" => QueryOp::Gte,
            "in" => QueryOp::In,
            "startsWith" => QueryOp::StartsWith,
            "endsWith" => QueryOp::EndsWith,
            "contains" => QueryOp::Contains,
            _ => return None,
        })
    }
}

/// One `property op value` of a query-extension object.
#[derive(Debug, Clone)]
pub struct QueryClause {
    /// The property name.
    pub property: String,
    /// The operator.
    pub op: QueryOp,
    /// The operand.
    pub value: Json,
}

/// Parses the clauses of a query-extension object (`{"eo:cloud_cover": {"lt": 5}}`).
fn parse_query(q: &Json) -> Result<Vec<QueryClause>, String> {
    let obj = q.as_object().ok_or("query must be a table")?;
    let mut clauses = Vec::new();
    for (property, ops) in obj {
        let ops = ops.as_object().ok_or_else(|| {
            format!("query.\"{property}\" must be a table of operators such as {{ lt = 5 }}")
        })?;
        for (op, value) in ops {
            let op_parsed = QueryOp::parse(op).ok_or_else(|| {
                format!(
                    "query.\"{property}\": unknown operator `{op}` (eq, neq, lt, lte, gt, gte, in, startsWith, endsWith, contains)"
                )
            })?;
            if op_parsed == QueryOp::In && !value.is_array() {
                return Err(format!("query.\"{property}\".in must be an array"));
            }
            clauses.push(QueryClause {
                property: property.clone(),
                op: op_parsed,
                value: value.clone(),
            });
        }
    }
    Ok(clauses)
}

/// A query-extension object: as written (sent to an API) and parsed (evaluated on static
/// catalogs).
#[derive(Debug, Clone)]
pub struct Query {
    json: Json,
    clauses: Vec<QueryClause>,
}

impl Query {
    /// Parses a query-extension object (`{"eo:cloud_cover": {"lt": 5}}`).
    ///
    /// # Errors
    /// A message naming the bad property or operator.
    pub fn parse(json: Json) -> Result<Query, String> {
        let clauses = parse_query(&json)?;
        Ok(Query { json, clauses })
    }

    /// The object as written.
    pub fn json(&self) -> &Json {
        &self.json
    }

    /// Whether `item` satisfies every clause.
    pub fn matches(&self, item: &Json) -> bool {
        self.clauses.iter().all(|c| c.matches(item))
    }
}

/// A CQL2-JSON filter: as written (sent to an API) and, when it is within the subset evaluated
/// here, parsed (evaluated on static catalogs).
#[derive(Debug, Clone)]
pub struct Cql2Filter {
    json: Json,
    expr: Option<cql2::Expr>,
}

impl Cql2Filter {
    /// Parses a CQL2-JSON filter. For a live API (`for_api`) a filter outside the local subset
    /// is kept as written, since the server may know more of CQL2.
    ///
    /// # Errors
    /// A message naming the unsupported or malformed part, when the filter is for a static
    /// catalog.
    pub fn parse(json: Json, for_api: bool) -> Result<Cql2Filter, String> {
        let expr = match cql2::parse(&json) {
            Ok(e) => Some(e),
            Err(e) if for_api => {
                tracing::debug!("filter not evaluable locally ({e}); sent to the API as is");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(Cql2Filter { json, expr })
    }

    /// The filter as written.
    pub fn json(&self) -> &Json {
        &self.json
    }

    /// Whether `item` satisfies the filter (only a true result does); a filter that is not
    /// evaluated here (only for APIs) lets every item through.
    pub fn matches(&self, item: &Json) -> bool {
        self.expr
            .as_ref()
            .is_none_or(|e| e.eval(item) == Some(true))
    }
}

impl QueryClause {
    /// Whether `item` satisfies the clause (a missing property never does).
    pub fn matches(&self, item: &Json) -> bool {
        let v = item_value(item, &self.property);
        if matches!(v, Scalar::Null) {
            return false;
        }
        let operand = Scalar::from_json(&self.value);
        let str_op = |f: fn(&str, &str) -> bool| match (&v, &operand) {
            (Scalar::Str(a), Scalar::Str(b)) => f(a, b),
            _ => false,
        };
        match self.op {
            QueryOp::Eq => compare(&v, &operand) == Some(Ordering::Equal),
            QueryOp::Neq => compare(&v, &operand).is_some_and(|o| o != Ordering::Equal),
            QueryOp::Lt => compare(&v, &operand) == Some(Ordering::Less),
            QueryOp::Lte => matches!(
                compare(&v, &operand),
                Some(Ordering::Less | Ordering::Equal)
            ),
            QueryOp::Gt => compare(&v, &operand) == Some(Ordering::Greater),
            QueryOp::Gte => matches!(
                compare(&v, &operand),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            QueryOp::In => match &operand {
                Scalar::List(list) => list.iter().any(|o| compare(&v, o) == Some(Ordering::Equal)),
                _ => false,
            },
            QueryOp::StartsWith => str_op(|a, b| a.starts_with(b)),
            QueryOp::EndsWith => str_op(|a, b| a.ends_with(b)),
            QueryOp::Contains => str_op(|a, b| a.contains(b)),
        }
    }
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The field (`datetime`, `eo:cloud_cover`, `properties.eo:cloud_cover`, `id`).
    pub field: String,
    /// Descending order.
    pub descending: bool,
}

/// Parses sortby: strings (`"-eo:cloud_cover"`, `"+datetime"`, `"id"`) or objects
/// `{field, direction = "asc" | "desc"}`.
///
/// # Errors
/// A message about the bad entry.
pub fn parse_sortby(entries: &[Json]) -> Result<Vec<SortKey>, String> {
    entries
        .iter()
        .map(|e| match e {
            Json::String(s) => {
                let (descending, field) = match s.as_bytes().first() {
                    Some(b'-') => (true, &s[1..]),
                    Some(b'+') => (false, &s[1..]),
                    _ => (false, s.as_str()),
                };
                if field.is_empty() {
                    return Err("a sortby field is empty".to_string());
                }
                Ok(SortKey { field: field.into(), descending })
            }
            Json::Object(o) => {
                let field = o
                    .get("field")
                    .and_then(Json::as_str)
                    .filter(|f| !f.is_empty())
                    .ok_or("a sortby table needs a `field` string")?;
                let descending = match o.get("direction").and_then(Json::as_str) {
                    None | Some("asc") => false,
                    Some("desc") => true,
                    Some(d) => return Err(format!("sortby direction `{d}` is not \"asc\" or \"desc\"")),
                };
                Ok(SortKey { field: field.into(), descending })
            }
            _ => Err("sortby entries are strings such as \"-eo:cloud_cover\" or tables { field, direction }".into()),
        })
        .collect()
}

/// The STAC API POST form of sort keys.
pub fn sortby_json(keys: &[SortKey]) -> Json {
    Json::Array(
        keys.iter()
            .map(|k| serde_json::json!({"field": k.field, "direction": if k.descending { "desc" } else { "asc" }}))
            .collect(),
    )
}

/// The STAC API GET form of sort keys (`-eo:cloud_cover,+datetime`).
pub fn sortby_query(keys: &[SortKey]) -> String {
    keys.iter()
        .map(|k| format!("{}{}", if k.descending { '-' } else { '+' }, k.field))
        .collect::<Vec<_>>()
        .join(",")
}

/// The default order of results: start datetime, then id, then collection.
pub fn default_order(a: &Json, b: &Json) -> Ordering {
    let t = |i: &Json| datetime::item_interval(i).and_then(|t| t.start);
    let s = |i: &Json, k: &str| i.get(k).and_then(Json::as_str).map(str::to_owned);
    t(a).cmp(&t(b))
        .then_with(|| s(a, "id").cmp(&s(b, "id")))
        .then_with(|| s(a, "collection").cmp(&s(b, "collection")))
}

/// Orders by `keys` (missing values last), then by [`default_order`].
pub fn sort_items(items: &mut [Json], keys: &[SortKey]) {
    items.sort_by(|a, b| {
        for k in keys {
            let (x, y) = (item_value(a, &k.field), item_value(b, &k.field));
            let o = match (&x, &y) {
                (Scalar::Null, Scalar::Null) => Ordering::Equal,
                (Scalar::Null, _) => Ordering::Greater,
                (_, Scalar::Null) => Ordering::Less,
                _ => {
                    let o = compare(&x, &y).unwrap_or(Ordering::Equal);
                    if k.descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        default_order(a, b)
    });
}

/// Every filter of a search, evaluated against items of a static catalog.
#[derive(Debug, Clone, Default)]
pub struct LocalFilter<'a> {
    /// Allowed collection ids.
    pub collections: Option<&'a [String]>,
    /// Allowed item ids.
    pub ids: Option<&'a [String]>,
    /// The area the footprint must intersect (bbox or intersects).
    pub spatial: Option<Geometry<f64>>,
    /// The interval the item's extent must overlap.
    pub datetime: Option<Interval>,
    /// Query-extension clauses, all of which must hold.
    pub query: Option<&'a Query>,
    /// A CQL2 filter that must be true.
    pub cql2: Option<&'a Cql2Filter>,
}

impl LocalFilter<'_> {
    /// Whether `item` passes every filter.
    pub fn matches(&self, item: &Json) -> bool {
        let member = |allowed: Option<&[String]>, key: &str| {
            allowed.is_none_or(|allowed| {
                item.get(key)
                    .and_then(Json::as_str)
                    .is_some_and(|v| allowed.iter().any(|x| x == v))
            })
        };
        member(self.collections, "collection")
            && member(self.ids, "id")
            && self.spatial.as_ref().is_none_or(|area| {
                geometry::item_footprint(item).is_some_and(|fp| fp.intersects(area))
            })
            && self
                .datetime
                .as_ref()
                .is_none_or(|dt| datetime::item_interval(item).is_some_and(|t| t.overlaps(dt)))
            && self.query.is_none_or(|q| q.matches(item))
            && self.cql2.is_none_or(|f| f.matches(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: &str, cc: f64, dt: &str) -> Json {
        json!({"type": "Feature", "id": id, "collection": "c", "geometry": null, "bbox": [0, 0, 1, 1],
               "properties": {"eo:cloud_cover": cc, "datetime": dt, "platform": "sentinel-2a"}})
    }

    #[test]
    fn query_ops() {
        let i = item("a", 3.0, "2021-07-01T00:00:00Z");
        let m = |q: Json| Query::parse(q).unwrap().matches(&i);
        assert!(m(json!({"eo:cloud_cover": {"lt": 5}})));
        assert!(!m(json!({"eo:cloud_cover": {"gt": 5}})));
        assert!(m(json!({"eo:cloud_cover": {"gte": 3, "lte": 3}})));
        assert!(m(json!({"platform": {"in": ["sentinel-2a", "x"]}})));
        assert!(m(json!({"platform": {"neq": "sentinel-2b"}})));
        assert!(m(json!({"platform": {"startsWith": "sentinel"}})));
        assert!(!m(json!({"missing": {"neq": 1}})));
        assert!(!m(
            json!({"datetime": {"gte": "2021-06-30T23:00:00-02:00"}})
        ));
        assert!(Query::parse(json!({"a": {"like": 1}})).is_err());
        assert!(Query::parse(json!({"a": 1})).is_err());
        assert!(Query::parse(json!({"a": {"in": 1}})).is_err());
    }

    #[test]
    fn sorting() {
        let mut v = vec![
            item("b", 1.0, "2021-07-02T00:00:00Z"),
            item("a", 2.0, "2021-07-02T00:00:00Z"),
            item("c", 0.0, "2021-07-01T00:00:00Z"),
        ];
        sort_items(&mut v, &[]);
        let ids: Vec<_> = v.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["c", "a", "b"]);
        let keys = parse_sortby(&[json!("-eo:cloud_cover")]).unwrap();
        sort_items(&mut v, &keys);
        let ids: Vec<_> = v.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(sortby_query(&keys), "-eo:cloud_cover");
        assert!(parse_sortby(&[json!({"field": "x", "direction": "up"})]).is_err());
    }
}
