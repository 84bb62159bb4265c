//! The `sign` node kind: makes asset hrefs readable.
//!
//! `planetary-computer` appends a SAS token to every href on `<account>.blob.core.windows.net`,
//! fetching one token per account/container from the SAS endpoint and reusing it until less than
//! a minute of validity remains. Tokens never reach logs or error messages.

use std::collections::HashMap;
use std::sync::Mutex;

use flow_core::declare::DeclaredParams;
use flow_core::{
    Caching, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, Params, RunContext,
    Signature, Value, ValueType,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value as Json;

use crate::datetime;
use crate::error::{body_snippet, redact_url, StacError};
use crate::http::{HttpClient, HttpConfig, Request};

/// The environment variable holding a Planetary Computer subscription key.
pub const SUBSCRIPTION_KEY_ENV: &str = "PC_SDK_SUBSCRIPTION_KEY";
/// The default SAS token endpoint.
pub const DEFAULT_SAS_URL: &str = "https://planetarycomputer.microsoft.com/api/sas/v1/token";
/// A token is renewed once less than this much validity remains.
pub const REFRESH_MARGIN: SignedDuration = SignedDuration::from_secs(60);
/// Storage accounts that are public and must not be signed.
const PUBLIC_ACCOUNTS: &[&str] = &["ai4edatasetspublicassets"];

/// Where a sign node gets the subscription key from.
#[derive(Clone, Default)]
enum KeySource {
    /// [`SUBSCRIPTION_KEY_ENV`], read when the node is built.
    #[default]
    Env,
    /// A given key (or none).
    Fixed(Option<String>),
}

/// The `sign` kind.
#[derive(Clone, Default)]
pub struct SignKind {
    key: KeySource,
}

impl std::fmt::Debug for SignKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignKind").finish_non_exhaustive()
    }
}

impl SignKind {
    /// The kind as registered: the subscription key comes from `PC_SDK_SUBSCRIPTION_KEY` at build.
    pub fn new() -> Self {
        SignKind::default()
    }

    /// A kind whose nodes use `key` instead of reading the environment (for tests and embedders).
    pub fn with_subscription_key(key: Option<String>) -> Self {
        SignKind {
            key: KeySource::Fixed(key),
        }
    }
}

flow_core::param_enum! {
    /// How hrefs are signed.
    pub enum Provider {
        /// SAS tokens from the Planetary Computer.
        PlanetaryComputer = "planetary-computer",
        /// Items pass through unchanged.
        None = "none",
    }
}

flow_core::params! {
    /// `sign` params as written in the recipe.
    pub struct SignParams {
        /// who signs the hrefs
        pub provider: Provider,
        /// SAS token endpoint (planetary-computer)
        pub sas_url: String = DEFAULT_SAS_URL.to_string(),
    }
}

/// `sign` params that passed validation: the provider, and the SAS endpoint as an http(s) URL
/// without a trailing `/`.
#[derive(Debug, Clone)]
pub struct ValidSignParams {
    provider: Provider,
    sas_url: String,
}

impl SignParams {
    /// Checks the params.
    ///
    /// # Errors
    /// A [`ParamError`] on `sas_url` when it is not an http(s) URL.
    pub fn validate(self) -> Result<ValidSignParams, ParamError> {
        let sas_url = self.sas_url.trim().trim_end_matches('/').to_string();
        match url::Url::parse(&sas_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(ParamError::new(
                    "sas_url",
                    format!("`{sas_url}` is not an http(s) URL"),
                ))
            }
        }
        Ok(ValidSignParams {
            provider: self.provider,
            sas_url,
        })
    }
}

impl ValidSignParams {
    /// Who signs the hrefs.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The SAS token endpoint, without a trailing `/`.
    pub fn sas_url(&self) -> &str {
        &self.sas_url
    }
}

impl NodeKind for SignKind {
    fn name(&self) -> &str {
        "sign"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Makes asset hrefs readable. `planetary-computer` appends a SAS token to hrefs on \
         <account>.blob.core.windows.net (one token per account/container, renewed a minute before \
         it expires; PC_SDK_SUBSCRIPTION_KEY is sent when set) and records msft:expiry on each \
         signed item; `none` passes items through. Never cached: tokens never enter the cache, and \
         nodes downstream keep stable cache keys."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![flow_core::Port::required(
                "input",
                ValueType::Items,
                "the items to sign",
            )],
            output: ValueType::Items,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        SignParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let params = SignParams::parse(params)?.validate()?;
        let subscription_key = match &self.key {
            KeySource::Env => std::env::var(SUBSCRIPTION_KEY_ENV)
                .ok()
                .filter(|k| !k.trim().is_empty()),
            KeySource::Fixed(k) => k.clone(),
        };
        Ok(Box::new(SignNode {
            params,
            subscription_key,
            tokens: Mutex::new(HashMap::new()),
        }))
    }
}

/// A SAS token and when it expires.
struct Token {
    token: String,
    expiry: Timestamp,
    /// As the server wrote it.
    expiry_text: String,
    /// When it was fetched.
    fetched: Timestamp,
}

/// A built `sign` node; it keeps the tokens it fetched.
struct SignNode {
    params: ValidSignParams,
    subscription_key: Option<String>,
    tokens: Mutex<HashMap<(String, String), Token>>,
}

/// The storage account and container of a blob URL, when `href` is one that needs signing.
fn blob_target(href: &str) -> Option<(String, String)> {
    let url = url::Url::parse(href).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?;
    let account = host.strip_suffix(".blob.core.windows.net")?;
    if account.is_empty() || account.contains('.') || PUBLIC_ACCOUNTS.contains(&account) {
        return None;
    }
    if url
        .query()
        .is_some_and(|q| q.to_ascii_lowercase().contains("sig="))
    {
        return None; // already signed
    }
    let container = url.path_segments()?.next().filter(|c| !c.is_empty())?;
    Some((account.to_string(), container.to_string()))
}

/// Appends `token` to the query string of `href` (before any fragment).
fn append_token(href: &str, token: &str) -> String {
    let token = token.trim_start_matches(['?', '&']);
    let (base, fragment) = href
        .split_once('#')
        .map_or((href, None), |(b, f)| (b, Some(f)));
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    let mut out = format!("{base}{sep}{token}");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

impl SignNode {
    /// A valid token for `account/container`, fetched when there is none or it expires within
    /// [`REFRESH_MARGIN`] (a token fetched during this run, since `run_started`, serves the rest
    /// of the run while it has not expired, so short-lived tokens are not fetched once per
    /// asset). Returns `(token, expiry, expiry text)`.
    fn token(
        &self,
        client: &HttpClient,
        account: &str,
        container: &str,
        ctx: &RunContext,
        run_started: Timestamp,
    ) -> Result<(String, Timestamp, String), NodeError> {
        let key = (account.to_string(), container.to_string());
        let now = Timestamp::now();
        if let Ok(tokens) = self.tokens.lock() {
            if let Some(t) = tokens.get(&key) {
                let fresh_enough = t.expiry.duration_since(now) >= REFRESH_MARGIN;
                let fetched_this_run = t.fetched >= run_started && t.expiry > now;
                if fresh_enough || fetched_this_run {
                    return Ok((t.token.clone(), t.expiry, t.expiry_text.clone()));
                }
            }
        }
        let url = format!("{}/{account}/{container}", self.params.sas_url());
        let mut request = Request::get(&url);
        if let Some(k) = &self.subscription_key {
            request = request.header("Ocp-Apim-Subscription-Key", k);
        }
        tracing::debug!(account, container, url = %redact_url(&url), "fetching a SAS token");
        let response = client.send(&request, &|| ctx.is_cancelled())?;
        if !(200..300).contains(&response.status) {
            return Err(StacError::Status {
                url: response.url.clone(),
                status: response.status,
                body: body_snippet(&response.body),
            }
            .into());
        }
        let json = response.json_secret()?;
        let bad = |message: &str| -> NodeError {
            StacError::BadResponse {
                url: response.url.clone(),
                status: response.status,
                message: message.into(),
                body: String::new(),
            }
            .into()
        };
        let token = json
            .get("token")
            .and_then(Json::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("the SAS response has no `token` string"))?
            .to_string();
        let expiry_text = json
            .get("msft:expiry")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("the SAS response has no `msft:expiry` string"))?
            .to_string();
        let expiry = datetime::parse_instant(&expiry_text).ok_or_else(|| {
            bad(&format!(
                "`msft:expiry` = `{expiry_text}` is not an RFC 3339 date-time"
            ))
        })?;
        tracing::debug!(account, container, expiry = %expiry_text, "got a SAS token");
        if let Ok(mut tokens) = self.tokens.lock() {
            let fetched = Timestamp::now();
            tokens.insert(
                key,
                Token {
                    token: token.clone(),
                    expiry,
                    expiry_text: expiry_text.clone(),
                    fetched,
                },
            );
        }
        Ok((token, expiry, expiry_text))
    }
}

impl Node for SignNode {
    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let items = inputs.items("input")?;
        let mut out = items.clone();
        if self.params.provider() == Provider::None {
            return Ok(Value::Items(out));
        }
        let run_started = Timestamp::now();
        let mut client: Option<HttpClient> = None;
        let mut signed_assets = 0usize;
        if let Some(features) = out.features_mut() {
            for item in features.iter_mut() {
                ctx.check_cancelled()?;
                let mut earliest: Option<(Timestamp, String)> = None;
                if let Some(assets) = item.get_mut("assets").and_then(Json::as_object_mut) {
                    for asset in assets.values_mut() {
                        let Some(Json::String(href)) = asset.get_mut("href") else {
                            continue;
                        };
                        let Some((account, container)) = blob_target(href) else {
                            continue;
                        };
                        let c = match &client {
                            Some(c) => c,
                            None => client.insert(HttpClient::new(HttpConfig::default())?),
                        };
                        let (token, expiry, text) =
                            self.token(c, &account, &container, ctx, run_started)?;
                        *href = append_token(href, &token);
                        signed_assets += 1;
                        let earlier = match &earliest {
                            Some((e, _)) => expiry < *e,
                            None => true,
                        };
                        if earlier {
                            earliest = Some((expiry, text));
                        }
                    }
                }
                if let (Some((_, text)), Some(props)) = (
                    earliest,
                    item.get_mut("properties").and_then(Json::as_object_mut),
                ) {
                    props.insert("msft:expiry".into(), Json::String(text));
                }
            }
        }
        tracing::info!(node = %ctx.node_id, assets = signed_assets, "signed asset hrefs");
        Ok(Value::Items(out))
    }

    fn caching(&self) -> Caching {
        Caching::Never
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_targets() {
        assert_eq!(
            blob_target("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/10/T/x.tif"),
            Some(("sentinel2l2a01".into(), "sentinel2-l2".into()))
        );
        assert_eq!(blob_target("https://example.com/x.tif"), None);
        assert_eq!(
            blob_target("https://a.blob.core.windows.net/c/x.tif?sv=1&sig=x"),
            None
        );
        assert_eq!(
            blob_target("https://ai4edatasetspublicassets.blob.core.windows.net/c/x"),
            None
        );
        assert_eq!(blob_target("/local/x.tif"), None);
    }

    #[test]
    fn appends() {
        assert_eq!(
            append_token("https://a/c/x.tif", "st=1&sig=2"),
            "https://a/c/x.tif?st=1&sig=2"
        );
        assert_eq!(
            append_token("https://a/c/x.tif?v=1", "st=1"),
            "https://a/c/x.tif?v=1&st=1"
        );
        assert_eq!(
            append_token("https://a/c/x.tif#f", "?st=1"),
            "https://a/c/x.tif?st=1#f"
        );
    }
}
