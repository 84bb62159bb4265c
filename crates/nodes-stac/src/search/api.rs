//! Item search against a live STAC API: POST `/search` (GET when the server answers 405),
//! following `next` links safely. Paging stops, with a warning, at the first of:
//!
//! - a `next` link that repeats an earlier request (a loop);
//! - an empty page;
//! - a page that adds no item not already seen (a server that answers every page with the same
//!   items, whatever the link);
//! - the page cap (`max_pages`).

use std::collections::HashSet;

use serde_json::{Map, Value as Json};

use crate::error::{body_snippet, redact_url, StacError};
use crate::http::{HttpClient, Method, Request};

/// The search URL of an API root: `{root}/search`, or the URL itself when it already ends in
/// `/search`.
pub fn search_url(root: &url::Url) -> String {
    let s = root.as_str();
    let (base, query) = s.split_once('?').map_or((s, None), |(b, q)| (b, Some(q)));
    let base = base.trim_end_matches('/');
    let mut out = if base.ends_with("/search") {
        base.to_string()
    } else {
        format!("{base}/search")
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// How a search ended, besides its items.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The items, in the order the server gave them, without duplicates.
    pub items: Vec<Json>,
    /// Pages fetched.
    pub pages: usize,
    /// Why paging stopped early, when it did (loop, empty page, a page of duplicates, page cap).
    pub warnings: Vec<String>,
}

/// Limits of one search.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Stop once this many items are in hand.
    pub max_items: Option<usize>,
    /// Fetch at most this many pages.
    pub max_pages: usize,
}

/// A canonical text form of a request, to spot a next link that repeats an earlier one.
fn fingerprint(r: &Request) -> String {
    fn canonical(v: &Json) -> Json {
        match v {
            Json::Object(o) => {
                let mut keys: Vec<_> = o.keys().collect();
                keys.sort();
                Json::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), canonical(&o[k])))
                        .collect(),
                )
            }
            Json::Array(a) => Json::Array(a.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let body = r
        .body
        .as_ref()
        .map(canonical)
        .map(|b| b.to_string())
        .unwrap_or_default();
    let mut headers = r.headers.clone();
    headers.sort();
    format!("{:?} {} {} {:?}", r.method, r.url, body, headers)
}

/// The GET form of a POST search: the body's members as query parameters.
///
/// # Errors
/// [`StacError::Transport`] when the URL cannot be parsed.
pub fn to_get(request: &Request) -> Result<Request, StacError> {
    let mut url = url::Url::parse(&request.url).map_err(|e| StacError::Transport {
        url: redact_url(&request.url),
        message: format!("invalid URL: {e}"),
    })?;
    if let Some(Json::Object(body)) = &request.body {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in body {
            let text = match (k.as_str(), v) {
                (_, Json::Null) => continue,
                ("sortby", Json::Array(a)) => a
                    .iter()
                    .map(|s| match s {
                        Json::Object(o) => {
                            let dir = if o.get("direction").and_then(Json::as_str) == Some("desc") {
                                '-'
                            } else {
                                '+'
                            };
                            format!(
                                "{dir}{}",
                                o.get("field").and_then(Json::as_str).unwrap_or_default()
                            )
                        }
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                (_, Json::Array(a)) if a.iter().all(|x| x.is_string() || x.is_number()) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                (_, Json::String(s)) => s.clone(),
                (_, Json::Number(_) | Json::Bool(_)) => v.to_string(),
                (_, other) => other.to_string(),
            };
            pairs.append_pair(k, &text);
        }
    }
    Ok(Request {
        method: Method::Get,
        url: url.to_string(),
        body: None,
        headers: request.headers.clone(),
    })
}

/// The request for a `next` link, relative to the request that gave the page.
fn next_request(
    link: &Map<String, Json>,
    current: &Request,
    original: &Json,
) -> Result<Option<Request>, StacError> {
    let Some(href) = link.get("href").and_then(Json::as_str) else {
        return Ok(None);
    };
    let url = url::Url::parse(&current.url)
        .and_then(|base| base.join(href))
        .map_err(|e| StacError::Transport {
            url: redact_url(href),
            message: format!("invalid next link: {e}"),
        })?;
    let headers: Vec<(String, String)> = link
        .get("headers")
        .and_then(Json::as_object)
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| match v {
                    Json::String(s) => Some((k.clone(), s.clone())),
                    Json::Array(a) => a
                        .first()
                        .and_then(Json::as_str)
                        .map(|s| (k.clone(), s.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let method = link.get("method").and_then(Json::as_str).unwrap_or("GET");
    if !method.eq_ignore_ascii_case("POST") {
        return Ok(Some(Request {
            method: Method::Get,
            url: url.to_string(),
            body: None,
            headers,
        }));
    }
    // POST: the link's body merged over the body of the request that gave this page (STAC's
    // `merge`; when absent we merge too, which is right both for servers that send the whole
    // body and for those that send only a token). `merge = false` replaces the body.
    let base = current.body.clone().unwrap_or_else(|| original.clone());
    let merge = link.get("merge").and_then(Json::as_bool).unwrap_or(true);
    let body = match (link.get("body"), merge) {
        (Some(Json::Object(b)), true) => {
            let mut merged = base.as_object().cloned().unwrap_or_default();
            for (k, v) in b {
                merged.insert(k.clone(), v.clone());
            }
            Json::Object(merged)
        }
        (Some(b @ Json::Object(_)), false) => b.clone(),
        _ => base,
    };
    Ok(Some(Request {
        method: Method::Post,
        url: url.to_string(),
        body: Some(body),
        headers,
    }))
}

/// Runs a search: POST `body` to `url`, then follows `next` links.
///
/// # Errors
/// A [`StacError`] for a failed request or a response that is not an ItemCollection.
pub fn search(
    client: &HttpClient,
    url: &str,
    body: &Json,
    limits: Limits,
    cancelled: &dyn Fn() -> bool,
) -> Result<Outcome, StacError> {
    let mut out = Outcome::default();
    let mut request = Request::post(url, body.clone());
    let mut seen_requests = HashSet::new();
    let mut seen_items = HashSet::new();
    let mut use_get = false;
    loop {
        let page = out.pages + 1;
        if page > limits.max_pages {
            out.warnings.push(format!(
                "stopped at the page cap (max_pages = {}); the results may be incomplete",
                limits.max_pages
            ));
            break;
        }
        if use_get && request.method == Method::Post {
            request = to_get(&request)?;
        }
        if !seen_requests.insert(fingerprint(&request)) {
            out.warnings.push(format!(
                "pagination loop at page {page}: the next link repeats an earlier request ({}); stopped",
                redact_url(&request.url)
            ));
            break;
        }
        let mut response = client.send(&request, cancelled)?;
        if response.status == 405 && request.method == Method::Post {
            tracing::info!(url = %redact_url(&request.url), "POST not allowed (405); searching with GET");
            use_get = true;
            request = to_get(&request)?;
            seen_requests.insert(fingerprint(&request));
            response = client.send(&request, cancelled)?;
        }
        if !(200..300).contains(&response.status) {
            return Err(StacError::Status {
                url: response.url.clone(),
                status: response.status,
                body: body_snippet(&response.body),
            });
        }
        let json = response.json()?;
        let bad = |message: &str| StacError::BadResponse {
            url: response.url.clone(),
            status: response.status,
            message: message.into(),
            body: body_snippet(&response.body),
        };
        let features = json
            .get("features")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("not an ItemCollection (no `features` array)"))?;
        out.pages = page;
        tracing::debug!(page, items = features.len(), "search page");
        if features.is_empty() {
            if page > 1 {
                out.warnings
                    .push(format!("page {page} was empty; stopped paging"));
            }
            break;
        }
        let before = out.items.len();
        for f in features {
            if !f.is_object() || !f.get("id").is_some_and(Json::is_string) {
                return Err(bad("an item without a string `id`"));
            }
            let key = (
                f.get("collection")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
                f.get("id")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
            );
            if seen_items.insert(key) {
                out.items.push(f.clone());
            }
        }
        if out.items.len() == before {
            // Page 1 cannot repeat anything; a later page of nothing but known items means the
            // server ignores the paging token, and every further page would be the same.
            out.warnings.push(format!(
                "page {page} of {} added no new item (all {} were already seen); stopped paging",
                response.url,
                features.len()
            ));
            break;
        }
        if let Some(max) = limits.max_items {
            if out.items.len() >= max {
                out.items.truncate(max);
                break;
            }
        }
        let next = json
            .get("links")
            .and_then(Json::as_array)
            .and_then(|links| {
                links
                    .iter()
                    .find(|l| l.get("rel").and_then(Json::as_str) == Some("next"))
            })
            .and_then(Json::as_object);
        match next {
            None => break,
            Some(link) => match next_request(link, &request, body)? {
                Some(r) => request = r,
                None => break,
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn search_urls() {
        let u = |s: &str| search_url(&url::Url::parse(s).unwrap());
        assert_eq!(u("https://h/api/stac/v1"), "https://h/api/stac/v1/search");
        assert_eq!(u("https://h/api/stac/v1/"), "https://h/api/stac/v1/search");
        assert_eq!(u("https://h/search"), "https://h/search");
    }

    #[test]
    fn get_form() {
        let r = Request::post(
            "http://h/search",
            json!({"collections": ["a", "b"], "bbox": [1, 2.5, 3, 4], "limit": 2,
                   "query": {"eo:cloud_cover": {"lt": 5}}, "sortby": [{"field": "datetime", "direction": "desc"}]}),
        );
        let g = to_get(&r).unwrap();
        let u = url::Url::parse(&g.url).unwrap();
        let q: Vec<(String, String)> = u.query_pairs().map(|(a, b)| (a.into(), b.into())).collect();
        assert!(q.contains(&("collections".into(), "a,b".into())));
        assert!(q.contains(&("bbox".into(), "1,2.5,3,4".into())));
        assert!(q.contains(&("limit".into(), "2".into())));
        assert!(q.contains(&("query".into(), r#"{"eo:cloud_cover":{"lt":5}}"#.into())));
        assert!(q.contains(&("sortby".into(), "-datetime".into())));
    }

    #[test]
    fn next_links() {
        let cur = Request::post(
            "http://h/api/search",
            json!({"collections": ["c"], "limit": 2}),
        );
        let l = json!({"rel": "next", "href": "search?token=2"});
        let r = next_request(l.as_object().unwrap(), &cur, &json!({}))
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.method, r.url.as_str()),
            (Method::Get, "http://h/api/search?token=2")
        );
        let l = json!({"rel": "next", "href": "http://h/api/search", "method": "POST", "body": {"token": "n2"}});
        let r = next_request(l.as_object().unwrap(), &cur, &json!({}))
            .unwrap()
            .unwrap();
        assert_eq!(
            r.body.unwrap(),
            json!({"collections": ["c"], "limit": 2, "token": "n2"})
        );
        let l = json!({"rel": "next", "href": "http://h/api/search", "method": "POST", "body": {"token": "n2"}, "merge": false});
        let r = next_request(l.as_object().unwrap(), &cur, &json!({}))
            .unwrap()
            .unwrap();
        assert_eq!(r.body.unwrap(), json!({"token": "n2"}));
    }
}
