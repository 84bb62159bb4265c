//! The `stac-search` node kind: item search against a live STAC API, or the same filters over a
//! local ItemCollection / static catalog / `builtin:` dataset.
//!
//! The output records where its items came from ([`flow_core::Items::set_catalog`], the
//! `flow:catalog` member): the API root URL (redacted like every URL flow shows), or the absolute
//! path of the local file read (for `builtin:` datasets, the materialized file). Readers use it to
//! tell items of a remote catalog from those of a local one. It is the same on every run against
//! the same catalog, so the content identity of a live result still follows its items only.

pub mod api;
pub mod cql2;
pub mod filter;
pub mod static_catalog;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use flow_core::dataset;
use flow_core::declare::DeclaredParams;
use flow_core::{
    Caching, Inputs, Items, Node, NodeError, NodeKind, ParamError, ParamSpec, Params, RunContext,
    Signature, Value, ValueType,
};
use serde_json::{json, Value as Json};

use crate::datetime::{self, Interval};
use crate::error::redact_url;
use crate::geometry;
use crate::http::{HttpClient, HttpConfig};
use crate::items::normalize_proj;
use filter::{Cql2Filter, LocalFilter, Query, SortKey};

/// The `stac-search` kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct StacSearchKind;

flow_core::params! {
    /// `stac-search` params as written in the recipe.
    pub struct SearchParams {
        /// http(s) STAC API root; local ItemCollection / catalog.json path or file:// URL; or builtin:NAME
        pub catalog: String,
        /// collection ids
        pub collections: Option<Vec<String>>,
        /// [west, south, east, north] in WGS84
        pub bbox: Option<Vec<f64>>,
        /// GeoJSON geometry (inline table) or the path of a GeoJSON file
        pub intersects: Option<toml::Value>,
        /// search the bbox of `intersects` instead of the geometry
        pub envelope: bool = false,
        /// the area of interest, a GeoJSON geometry in lon/lat (by default the recipe's top-level `aoi`), searched when neither `bbox` nor `intersects` is given
        pub aoi: Option<toml::Table>,
        /// an instant or date, `a/b`, `../b` or `a/..`
        pub datetime: Option<String>,
        /// query extension: { "eo:cloud_cover" = { lt = 5 } }
        pub query: Option<toml::Table>,
        /// CQL2-JSON filter
        pub filter: Option<toml::Table>,
        /// sort keys: "-eo:cloud_cover" or { field, direction }
        pub sortby: Option<Vec<toml::Value>>,
        /// page size asked of the API
        pub limit: Option<i64>,
        /// stop after this many items
        pub max_items: Option<i64>,
        /// item ids
        pub ids: Option<Vec<String>>,
        /// seconds a live search result stays cached
        pub ttl: i64 = 86_400,
        /// fetch at most this many pages
        pub max_pages: i64 = 1000,
        /// retries on 429, 5xx and transport errors
        pub retries: i64 = 3,
        /// connect and read timeout, seconds
        pub timeout: f64 = 30.0,
    }
}

/// Where items come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Catalog {
    /// A live STAC API root.
    Api(url::Url),
    /// A local file (relative paths are taken from the recipe's directory).
    File(String),
    /// A named dataset from the run context.
    Builtin(String),
}

/// The area of interest.
#[derive(Debug, Clone, PartialEq)]
pub enum Area {
    /// No spatial filter.
    None,
    /// A STAC bbox, already checked.
    Bbox(Vec<f64>),
    /// A GeoJSON geometry, already checked.
    Geometry(Json),
    /// A GeoJSON file, read at run time.
    File(String),
}

/// `stac-search` params that passed validation; made only by [`SearchParams::validate`].
#[derive(Debug, Clone)]
pub struct ValidSearchParams {
    catalog: Catalog,
    collections: Option<Vec<String>>,
    ids: Option<Vec<String>>,
    area: Area,
    envelope: bool,
    datetime: Option<Interval>,
    query: Option<Query>,
    filter: Option<Cql2Filter>,
    sortby: Vec<SortKey>,
    limit: Option<u64>,
    max_items: Option<usize>,
    ttl: u64,
    max_pages: usize,
    http: HttpConfig,
}

impl ValidSearchParams {
    /// Where items come from.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
    /// Allowed collection ids (never empty).
    pub fn collections(&self) -> Option<&[String]> {
        self.collections.as_deref()
    }
    /// Allowed item ids (never empty).
    pub fn ids(&self) -> Option<&[String]> {
        self.ids.as_deref()
    }
    /// The area of interest.
    pub fn area(&self) -> &Area {
        &self.area
    }
    /// Search the bbox of the geometry instead of the geometry (only with a geometry).
    pub fn envelope(&self) -> bool {
        self.envelope
    }
    /// The time interval items must overlap.
    pub fn datetime(&self) -> Option<Interval> {
        self.datetime
    }
    /// The query-extension filter.
    pub fn query(&self) -> Option<&Query> {
        self.query.as_ref()
    }
    /// The CQL2 filter.
    pub fn filter(&self) -> Option<&Cql2Filter> {
        self.filter.as_ref()
    }
    /// Sort keys, first to last.
    pub fn sortby(&self) -> &[SortKey] {
        &self.sortby
    }
    /// The page size asked of an API.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }
    /// Stop after this many items.
    pub fn max_items(&self) -> Option<usize> {
        self.max_items
    }
    /// Seconds a live result stays cached.
    pub fn ttl(&self) -> u64 {
        self.ttl
    }
    /// Fetch at most this many pages.
    pub fn max_pages(&self) -> usize {
        self.max_pages
    }
    /// Retries and timeout of the HTTP client.
    pub fn http(&self) -> HttpConfig {
        self.http
    }
}

/// Converts TOML to JSON (datetimes become strings, non-finite floats null).
pub(crate) fn toml_to_json(v: &toml::Value) -> Json {
    match v {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(a) => Json::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Json::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

fn table_to_json(t: toml::Table) -> Json {
    toml_to_json(&toml::Value::Table(t))
}

fn parse_catalog(s: &str) -> Result<Catalog, ParamError> {
    let s = s.trim();
    if let Some(name) = s.strip_prefix("builtin:") {
        let ok = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(ParamError::new(
                "catalog",
                format!("`{s}`: a builtin dataset name is letters, digits, `-`, `_` and `.`"),
            ));
        }
        return Ok(Catalog::Builtin(name.into()));
    }
    if s.is_empty() {
        return Err(ParamError::new("catalog", "the catalog is empty"));
    }
    if crate::items::has_scheme(s) {
        let url = url::Url::parse(s)
            .map_err(|e| ParamError::new("catalog", format!("`{s}` is not a valid URL: {e}")))?;
        return match url.scheme() {
            "http" | "https" => Ok(Catalog::Api(url)),
            "file" => url
                .to_file_path()
                .map(|p| Catalog::File(p.to_string_lossy().into_owned()))
                .map_err(|()| ParamError::new("catalog", format!("`{s}` is not a local file URL"))),
            other => Err(ParamError::new(
                "catalog",
                format!("unsupported scheme `{other}`: use an http(s) STAC API, a local path or file:// URL, or builtin:NAME"),
            )),
        };
    }
    Ok(Catalog::File(s.into()))
}

/// `v` as a count between 1 and `max`.
fn count(param: &str, v: i64, max: i64) -> Result<u64, ParamError> {
    if v < 1 || v > max {
        Err(ParamError::new(
            param,
            format!("{param} must be between 1 and {max}, not {v}"),
        ))
    } else {
        Ok(v.unsigned_abs())
    }
}

fn parse_area(bbox: Option<Vec<f64>>, intersects: Option<toml::Value>) -> Result<Area, ParamError> {
    Ok(match (bbox, intersects) {
        (Some(_), Some(_)) => {
            return Err(ParamError::new(
                "intersects",
                "give either bbox or intersects, not both",
            ))
        }
        (Some(b), None) => {
            // 4 numbers (6 with heights are accepted too), south <= north
            geometry::bbox_geometry(&b).map_err(|e| ParamError::new("bbox", e))?;
            Area::Bbox(b)
        }
        (None, Some(toml::Value::Table(t))) => {
            let g = geometry::document_geometry(&table_to_json(t))
                .map_err(|e| ParamError::new("intersects", e))?;
            Area::Geometry(g)
        }
        (None, Some(toml::Value::String(path))) if !path.trim().is_empty() => Area::File(path),
        (None, Some(_)) => {
            return Err(ParamError::new(
                "intersects",
                "intersects is an inline GeoJSON geometry table or the path of a GeoJSON file",
            ))
        }
        (None, None) => Area::None,
    })
}

fn non_empty(
    param: &str,
    v: Option<Vec<String>>,
    what: &str,
) -> Result<Option<Vec<String>>, ParamError> {
    match v {
        Some(v) if v.is_empty() => Err(ParamError::new(
            param,
            format!("{param} is empty: leave it out to search all {what}"),
        )),
        v => Ok(v),
    }
}

impl SearchParams {
    /// Checks the params and parses what they hold (catalog, area, datetime, query, CQL2 filter,
    /// sort keys).
    ///
    /// # Errors
    /// A [`ParamError`] naming the param at fault.
    pub fn validate(self) -> Result<ValidSearchParams, ParamError> {
        let catalog = parse_catalog(&self.catalog)?;
        let is_api = matches!(catalog, Catalog::Api(_));
        let intersects = match (&self.bbox, self.intersects, self.aoi) {
            (None, None, Some(aoi)) => Some(toml::Value::Table(aoi)),
            (_, intersects, _) => intersects,
        };
        let area = parse_area(self.bbox, intersects)?;
        if self.envelope && !matches!(area, Area::Geometry(_) | Area::File(_)) {
            return Err(ParamError::new(
                "envelope",
                "envelope = true needs an intersects geometry",
            ));
        }
        let datetime = self
            .datetime
            .map(|d| datetime::parse_interval(&d).map_err(|e| ParamError::new("datetime", e)))
            .transpose()?;
        let query = self
            .query
            .map(|q| Query::parse(table_to_json(q)).map_err(|e| ParamError::new("query", e)))
            .transpose()?;
        let filter = self
            .filter
            .map(|f| {
                Cql2Filter::parse(table_to_json(f), is_api)
                    .map_err(|e| ParamError::new("filter", e))
            })
            .transpose()?;
        let sortby = match self.sortby {
            Some(s) => {
                let j: Vec<Json> = s.iter().map(toml_to_json).collect();
                filter::parse_sortby(&j).map_err(|e| ParamError::new("sortby", e))?
            }
            None => Vec::new(),
        };
        let limit = self.limit.map(|l| count("limit", l, 100_000)).transpose()?;
        let max_items = self
            .max_items
            .map(|m| count("max_items", m, i64::MAX))
            .transpose()?
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        let ttl = u64::try_from(self.ttl).map_err(|_| {
            ParamError::new(
                "ttl",
                format!("ttl must be 0 or more seconds, not {}", self.ttl),
            )
        })?;
        let max_pages = count("max_pages", self.max_pages, 1_000_000)? as usize;
        let retries = u32::try_from(self.retries)
            .ok()
            .filter(|r| *r <= 20)
            .ok_or_else(|| {
                ParamError::new(
                    "retries",
                    format!("retries must be between 0 and 20, not {}", self.retries),
                )
            })?;
        if !(self.timeout > 0.0 && self.timeout <= 3600.0) {
            return Err(ParamError::new(
                "timeout",
                format!(
                    "timeout must be more than 0 and at most 3600 seconds, not {}",
                    self.timeout
                ),
            ));
        }
        Ok(ValidSearchParams {
            catalog,
            collections: non_empty("collections", self.collections, "collections")?,
            ids: non_empty("ids", self.ids, "ids")?,
            area,
            envelope: self.envelope,
            datetime,
            query,
            filter,
            sortby,
            limit,
            max_items,
            ttl,
            max_pages,
            http: HttpConfig {
                retries,
                timeout: Duration::from_secs_f64(self.timeout),
                ..HttpConfig::default()
            },
        })
    }
}

impl NodeKind for StacSearchKind {
    fn name(&self) -> &str {
        "stac-search"
    }

    fn unkeyed_params(&self) -> &[&str] {
        // How long results are kept and how hard the API is tried change no item.
        &["ttl", "retries", "timeout"]
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Searches STAC items: POST {catalog}/search on a live STAC API (GET when POST is refused), \
         following `next` links safely (paging stops at a repeated link, an empty page, or a page \
         with no item not seen before; each retry is logged; a response over 64 MiB fails); or \
         the same filters over a local ItemCollection, a static catalog.json tree, or a \
         builtin:NAME dataset. Results are ordered by datetime then id; proj:epsg and proj:code \
         are both filled in; the output records the catalog's URL or local path (`flow:catalog`). \
         Live results are cached for `ttl` seconds."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: Vec::new(),
            output: ValueType::Items,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        SearchParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let criteria = criteria(params);
        let params = SearchParams::parse(params)?.validate()?;
        Ok(Box::new(SearchNode {
            params,
            criteria,
            stash: Mutex::new(None),
        }))
    }
}

/// The params that choose items, as `key = value` TOML in the recipe's order (a long value cut
/// short).
fn criteria(params: &Params) -> String {
    const WHAT: [&str; 7] = [
        "collections",
        "ids",
        "bbox",
        "intersects",
        "datetime",
        "query",
        "filter",
    ];
    let parts: Vec<String> = params
        .iter()
        .filter(|(k, _)| WHAT.contains(&k.as_str()))
        .map(|(k, v)| {
            let v = v.to_string();
            match v.char_indices().nth(120) {
                Some((cut, _)) => format!("{k} = {}...", &v[..cut]),
                None => format!("{k} = {v}"),
            }
        })
        .collect();
    if parts.is_empty() {
        "every item".into()
    } else {
        parts.join(", ")
    }
}

/// A built `stac-search` node.
struct SearchNode {
    params: ValidSearchParams,
    /// What it searches for, as the recipe wrote it (`collections = [...], datetime = ...`),
    /// for the warning of a search that finds nothing.
    criteria: String,
    /// A local catalog read by `key_material`, reused by `run`.
    stash: Mutex<Option<(PathBuf, static_catalog::Loaded)>>,
}

/// Materializes builtin dataset `name` once and returns the file to read
/// ([`flow_core::dataset::materialize`]).
///
/// # Errors
/// As [`flow_core::dataset::materialize`].
pub fn materialize_dataset(ctx: &RunContext, name: &str) -> Result<PathBuf, NodeError> {
    dataset::materialize(ctx, name)
}

impl SearchNode {
    /// The area as a GeoJSON geometry, reading a GeoJSON file when given one.
    fn area_geometry(&self, ctx: &RunContext) -> Result<Option<Json>, NodeError> {
        Ok(match &self.params.area {
            Area::None | Area::Bbox(_) => None,
            Area::Geometry(g) => Some(g.clone()),
            Area::File(p) => {
                let path = ctx.resolve(p);
                let bytes = std::fs::read(&path).map_err(|e| NodeError::io(&path, e))?;
                let doc: Json = serde_json::from_slice(&bytes).map_err(|e| {
                    NodeError::InvalidData(format!("intersects: {}: not JSON: {e}", path.display()))
                })?;
                let g = geometry::document_geometry(&doc).map_err(|e| {
                    NodeError::InvalidData(format!("intersects: {}: {e}", path.display()))
                })?;
                Some(g)
            }
        })
    }

    /// `(bbox, intersects)` as they go into a search, after `envelope`.
    fn spatial(&self, ctx: &RunContext) -> Result<(Option<Vec<f64>>, Option<Json>), NodeError> {
        let g = self.area_geometry(ctx)?;
        if let Area::Bbox(b) = &self.params.area {
            return Ok((Some(b.clone()), None));
        }
        match g {
            Some(g) if self.params.envelope => {
                let geom = geometry::to_geometry(&g).map_err(NodeError::InvalidData)?;
                let env = geometry::envelope(&geom).ok_or_else(|| {
                    NodeError::InvalidData("intersects: the geometry is empty".into())
                })?;
                Ok((Some(env.to_vec()), None))
            }
            other => Ok((None, other)),
        }
    }

    fn api_body(&self, ctx: &RunContext) -> Result<Json, NodeError> {
        let p = &self.params;
        let mut body = serde_json::Map::new();
        if let Some(c) = &p.collections {
            body.insert("collections".into(), json!(c));
        }
        if let Some(ids) = &p.ids {
            body.insert("ids".into(), json!(ids));
        }
        let (bbox, intersects) = self.spatial(ctx)?;
        if let Some(b) = bbox {
            body.insert("bbox".into(), json!(b));
        }
        if let Some(g) = intersects {
            body.insert("intersects".into(), g);
        }
        if let Some(d) = &p.datetime {
            body.insert("datetime".into(), Json::String(d.to_api_string()));
        }
        if let Some(q) = &p.query {
            body.insert("query".into(), q.json().clone());
        }
        if let Some(f) = &p.filter {
            body.insert("filter".into(), f.json().clone());
            body.insert("filter-lang".into(), Json::String("cql2-json".into()));
        }
        if !p.sortby.is_empty() {
            body.insert("sortby".into(), filter::sortby_json(&p.sortby));
        }
        if let Some(l) = p.limit {
            body.insert("limit".into(), json!(l));
        }
        Ok(Json::Object(body))
    }

    fn local_filter(&self, ctx: &RunContext) -> Result<LocalFilter<'_>, NodeError> {
        let p = &self.params;
        let (bbox, intersects) = self.spatial(ctx)?;
        let spatial = match (bbox, intersects) {
            (Some(b), _) => Some(geometry::bbox_geometry(&b).map_err(NodeError::InvalidData)?),
            (None, Some(g)) => Some(geometry::to_geometry(&g).map_err(NodeError::InvalidData)?),
            (None, None) => None,
        };
        Ok(LocalFilter {
            collections: p.collections(),
            ids: p.ids(),
            spatial,
            datetime: p.datetime,
            query: p.query(),
            cql2: p.filter(),
        })
    }

    /// The local file of a static search.
    fn static_path(&self, ctx: &RunContext) -> Result<PathBuf, NodeError> {
        match &self.params.catalog {
            Catalog::File(p) => Ok(ctx.resolve(p)),
            Catalog::Builtin(name) => materialize_dataset(ctx, name),
            Catalog::Api(_) => Err(NodeError::Failed("not a static catalog".into())),
        }
    }

    fn run_api(&self, ctx: &RunContext, root: &url::Url) -> Result<Vec<Json>, NodeError> {
        let client = HttpClient::new(self.params.http)?;
        let url = api::search_url(root);
        let body = self.api_body(ctx)?;
        let limits = api::Limits {
            max_items: self.params.max_items,
            max_pages: self.params.max_pages,
        };
        let outcome = api::search(&client, &url, &body, limits, &|| ctx.is_cancelled())?;
        for w in &outcome.warnings {
            tracing::warn!(node = %ctx.node_id, "{w}");
            ctx.warn(w.clone());
        }
        tracing::info!(node = %ctx.node_id, items = outcome.items.len(), pages = outcome.pages, "stac-search");
        Ok(outcome.items)
    }

    /// The items of a static search, and the file they were read from.
    fn run_static(&self, ctx: &RunContext) -> Result<(Vec<Json>, PathBuf), NodeError> {
        let path = self.static_path(ctx)?;
        let stashed = self
            .stash
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .filter(|(p, _)| *p == path);
        let loaded = match stashed {
            Some((_, l)) => l,
            None => static_catalog::load(&path)?,
        };
        for w in &loaded.warnings {
            tracing::warn!(node = %ctx.node_id, "{w}");
            ctx.warn(w.clone());
        }
        let filter = self.local_filter(ctx)?;
        let mut items: Vec<Json> = loaded
            .items
            .into_iter()
            .map(|mut i| {
                normalize_proj(&mut i);
                i
            })
            .filter(|i| filter.matches(i))
            .collect();
        filter::sort_items(&mut items, &self.params.sortby);
        if let Some(m) = self.params.max_items {
            items.truncate(m);
        }
        tracing::info!(node = %ctx.node_id, items = items.len(), catalog = %path.display(), "stac-search (static)");
        Ok((items, path))
    }
}

impl Node for SearchNode {
    fn run(&self, ctx: &RunContext, _inputs: &Inputs) -> Result<Value, NodeError> {
        let (mut items, catalog) = match &self.params.catalog {
            Catalog::Api(root) => {
                let mut items = self.run_api(ctx, root)?;
                for i in &mut items {
                    normalize_proj(i);
                }
                filter::sort_items(&mut items, &self.params.sortby);
                // the root as written (normalized by URL parsing), the same on every run, so
                // that the content identity of a live result depends on its items only
                (items, redact_url(root.as_str()))
            }
            Catalog::File(_) | Catalog::Builtin(_) => {
                let (items, path) = self.run_static(ctx)?;
                let path = static_catalog::absolute(&path);
                (items, path.to_string_lossy().into_owned())
            }
        };
        if items.is_empty() {
            ctx.warn(format!(
                "the search found no items in {catalog} for {}; check the collection names and \
                 the filters",
                self.criteria
            ));
        }
        items.shrink_to_fit();
        let mut items = Items::from_features(items);
        items.set_catalog(&catalog);
        Ok(Value::Items(items))
    }

    fn caching(&self) -> Caching {
        match self.params.catalog {
            Catalog::Api(_) => Caching::Ttl(self.params.ttl),
            _ => Caching::Store,
        }
    }

    fn key_material(&self, ctx: &RunContext) -> Result<Option<Vec<u8>>, NodeError> {
        let mut h = blake3::Hasher::new();
        match &self.params.catalog {
            Catalog::Api(_) => {}
            Catalog::File(p) => {
                let path = ctx.resolve(p);
                let loaded = static_catalog::load(&path)?;
                h.update(b"file\0");
                h.update(&loaded.digest);
                if let Ok(mut s) = self.stash.lock() {
                    *s = Some((path, loaded));
                }
            }
            Catalog::Builtin(name) => {
                let provider = ctx
                    .datasets
                    .get(name)
                    .ok_or_else(|| dataset::unknown(ctx, name))?;
                h.update(b"builtin\0");
                h.update(name.as_bytes());
                h.update(b"\0");
                h.update(provider.version().as_bytes());
            }
        }
        if let Area::File(p) = &self.params.area {
            let path = ctx.resolve(p);
            let bytes = std::fs::read(&path).map_err(|e| NodeError::io(&path, e))?;
            h.update(b"\0intersects\0");
            h.update(&bytes);
        }
        if matches!(self.params.catalog, Catalog::Api(_))
            && !matches!(self.params.area, Area::File(_))
        {
            return Ok(None);
        }
        Ok(Some(h.finalize().as_bytes().to_vec()))
    }

    fn is_fresh(&self, ctx: &RunContext, _cached: &Value) -> bool {
        match &self.params.catalog {
            // the cached hrefs point into the materialized directory: it must still be there
            Catalog::Builtin(name) => dataset::is_materialized(ctx, name),
            _ => true,
        }
    }
}
