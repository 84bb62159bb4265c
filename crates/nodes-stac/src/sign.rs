//! The `sign` node kind: makes asset hrefs readable.
//!
//! `planetary-computer` appends a SAS token to every href on `<account>.blob.core.windows.net`,
//! fetching one token per account/container from the SAS endpoint and reusing it until less than
//! a minute of validity remains. Tokens never reach logs or error messages.
//!
//! Tokens expire, and a long run can outlive them. So the node also registers its token cache as
//! a [`flow_core::signer::HrefSigner`] under the id `sas:<sas_url>` and writes that id into
//! every asset it signed ([`flow_core::signer::SIGNER_FIELD`], `"flow:signer"`). A reader looks
//! the signer up by that id and asks it for the href again: it drops the old token's parameters
//! from the href (any query of its own stays), and appends a token that is valid for at least
//! [`REFRESH_MARGIN`], fetching a new one when the held one is about to expire, or when the
//! reader says the server refused it (`renew`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flow_core::declare::DeclaredParams;
use flow_core::signer::SIGNER_FIELD;
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
         it expires; PC_SDK_SUBSCRIPTION_KEY is sent when set), records msft:expiry on each \
         signed item, and names itself in each signed asset (`flow:signer`) so that readers can \
         re-sign an href whose token expired or was refused mid-run; `none` passes items through. \
         Never cached: tokens never enter the cache, and nodes downstream keep stable cache keys."
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
        let signer = Arc::new(SasSigner {
            sas_url: params.sas_url().to_string(),
            subscription_key,
            tokens: Mutex::new(HashMap::new()),
        });
        Ok(Box::new(SignNode { params, signer }))
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

/// A token handed out: `(token, expiry, expiry as the server wrote it)`.
type Granted = (String, Timestamp, String);

/// When a held token serves instead of a new one.
#[derive(Debug, Clone)]
enum Reuse {
    /// While at least [`REFRESH_MARGIN`] of validity remains, or, for a token fetched since
    /// `since` (during this run of the sign node), while it has not expired: short-lived tokens
    /// are then not fetched once per asset.
    Run {
        /// When the run started.
        since: Timestamp,
    },
    /// While at least [`REFRESH_MARGIN`] of validity remains.
    Fresh,
    /// The server refused the token whose signature is `refused`: a held token serves only when
    /// it is another one (renewed meanwhile) with [`REFRESH_MARGIN`] left.
    Renew {
        /// The `sig` of the refused href, when it had one.
        refused: Option<String>,
    },
}

/// The SAS tokens of one endpoint, per account/container, shared by a sign node and (through
/// [`flow_core::signer`]) the readers of what it signed.
struct SasSigner {
    sas_url: String,
    subscription_key: Option<String>,
    tokens: Mutex<HashMap<(String, String), Token>>,
}

/// The id a signer for `sas_url` is registered under.
fn signer_id(sas_url: &str) -> String {
    format!("sas:{sas_url}")
}

/// The parameter names of a Shared Access Signature: they are dropped from an href before a new
/// token is appended.
const SAS_PARAMS: &[&str] = &[
    "sv", "ss", "srt", "sp", "se", "st", "spr", "sip", "si", "sr", "sig", "skoid", "sktid", "skt",
    "ske", "sks", "skv", "saoid", "suoid", "scid", "sdd", "ses",
];

/// `href` without its SAS query parameters (other parameters and the fragment stay as they
/// were), and the raw value of its `sig` parameter, if it had one.
fn strip_sas(href: &str) -> (String, Option<String>) {
    let (rest, fragment) = href
        .split_once('#')
        .map_or((href, None), |(r, f)| (r, Some(f)));
    let Some((base, query)) = rest.split_once('?') else {
        return (href.to_string(), None);
    };
    let mut sig = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let is_sas = SAS_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name));
            if is_sas && name.eq_ignore_ascii_case("sig") {
                sig = Some(value.to_string());
            }
            !pair.is_empty() && !is_sas
        })
        .collect();
    let mut out = base.to_string();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    (out, sig)
}

/// The raw `sig` value of a token (a query string).
fn token_sig(token: &str) -> Option<&str> {
    token
        .trim_start_matches(['?', '&'])
        .split('&')
        .find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.eq_ignore_ascii_case("sig").then_some(value)
        })
}

/// The token map, also after a panic elsewhere (it holds no invariant a panic could break).
fn lock(
    tokens: &Mutex<HashMap<(String, String), Token>>,
) -> MutexGuard<'_, HashMap<(String, String), Token>> {
    tokens
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SasSigner {
    /// A valid token for `account/container`: a held one when `reuse` allows, else a new one from
    /// the endpoint (built with a client from `client`, made on first use). The map stays locked
    /// while fetching, so that readers refused at once fetch one new token, not one each.
    fn token(
        &self,
        client: &mut Option<HttpClient>,
        account: &str,
        container: &str,
        reuse: &Reuse,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Granted, StacError> {
        let key = (account.to_string(), container.to_string());
        let mut tokens = lock(&self.tokens);
        let now = Timestamp::now();
        if let Some(t) = tokens.get(&key) {
            let fresh = t.expiry.duration_since(now) >= REFRESH_MARGIN;
            let usable = match reuse {
                Reuse::Run { since } => fresh || (t.fetched >= *since && t.expiry > now),
                Reuse::Fresh => fresh,
                Reuse::Renew { refused } => {
                    fresh
                        && refused
                            .as_deref()
                            .is_some_and(|r| token_sig(&t.token) != Some(r))
                }
            };
            if usable {
                return Ok((t.token.clone(), t.expiry, t.expiry_text.clone()));
            }
        }
        let client = match client {
            Some(c) => c,
            None => client.insert(HttpClient::new(HttpConfig::default())?),
        };
        let t = self.fetch(client, account, container, cancelled)?;
        let granted = (t.token.clone(), t.expiry, t.expiry_text.clone());
        tokens.insert(key, t);
        Ok(granted)
    }

    /// A new token for `account/container` from the endpoint.
    fn fetch(
        &self,
        client: &HttpClient,
        account: &str,
        container: &str,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Token, StacError> {
        let url = format!("{}/{account}/{container}", self.sas_url);
        let mut request = Request::get(&url);
        if let Some(k) = &self.subscription_key {
            request = request.header("Ocp-Apim-Subscription-Key", k);
        }
        tracing::debug!(account, container, url = %redact_url(&url), "fetching a SAS token");
        let response = client.send(&request, cancelled)?;
        if !(200..300).contains(&response.status) {
            return Err(StacError::Status {
                url: response.url.clone(),
                status: response.status,
                body: body_snippet(&response.body),
            });
        }
        let json = response.json_secret()?;
        let bad = |message: &str| StacError::BadResponse {
            url: response.url.clone(),
            status: response.status,
            message: message.into(),
            body: String::new(),
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
        Ok(Token {
            token,
            expiry,
            expiry_text,
            fetched: Timestamp::now(),
        })
    }
}

impl flow_core::signer::HrefSigner for SasSigner {
    /// `href` with its SAS parameters replaced by a token valid for at least
    /// [`REFRESH_MARGIN`] (a new one with `renew`, unless the held one is already another than
    /// the refused one). Hrefs that need no signing come back unchanged.
    fn sign(&self, href: &str, renew: bool) -> Result<String, String> {
        let (base, sig) = strip_sas(href);
        let Some((account, container)) = blob_container(&base) else {
            return Ok(href.to_string());
        };
        let reuse = if renew {
            Reuse::Renew { refused: sig }
        } else {
            Reuse::Fresh
        };
        if renew {
            tracing::info!(account, container, "re-signing an href the server refused");
        }
        let mut client = None;
        let (token, _, _) = self
            .token(&mut client, &account, &container, &reuse, &|| false)
            .map_err(|e| {
                format!(
                    "no SAS token for {account}/{container}: {}",
                    NodeError::from(e)
                )
            })?;
        Ok(append_token(&base, &token))
    }
}

/// A built `sign` node; its signer keeps the tokens it fetched.
struct SignNode {
    params: ValidSignParams,
    signer: Arc<SasSigner>,
}

/// The storage account and container of a blob URL that needs signing (a SAS token it may
/// already carry aside).
fn blob_container(href: &str) -> Option<(String, String)> {
    let url = url::Url::parse(href).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?;
    let account = host.strip_suffix(".blob.core.windows.net")?;
    if account.is_empty() || account.contains('.') || PUBLIC_ACCOUNTS.contains(&account) {
        return None;
    }
    let container = url.path_segments()?.next().filter(|c| !c.is_empty())?;
    Some((account.to_string(), container.to_string()))
}

/// The storage account and container of a blob URL, when `href` is one that needs signing and is
/// not signed yet.
fn blob_target(href: &str) -> Option<(String, String)> {
    if url::Url::parse(href)
        .ok()?
        .query()
        .is_some_and(|q| q.to_ascii_lowercase().contains("sig="))
    {
        return None; // already signed
    }
    blob_container(href)
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

impl Node for SignNode {
    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let items = inputs.items("input")?;
        let mut out = items.clone();
        if self.params.provider() == Provider::None {
            return Ok(Value::Items(out));
        }
        let reuse = Reuse::Run {
            since: Timestamp::now(),
        };
        let id = signer_id(&self.signer.sas_url);
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
                        let (token, expiry, text) = self.signer.token(
                            &mut client,
                            &account,
                            &container,
                            &reuse,
                            &|| ctx.is_cancelled(),
                        )?;
                        *href = append_token(href, &token);
                        if let Some(a) = asset.as_object_mut() {
                            a.insert(SIGNER_FIELD.into(), Json::String(id.clone()));
                        }
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
        if signed_assets > 0 {
            flow_core::signer::register(&id, self.signer.clone());
        }
        tracing::info!(node = %ctx.node_id, assets = signed_assets, signer = %id, "signed asset hrefs");
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
    fn strips_sas_parameters_only() {
        assert_eq!(
            strip_sas("https://a.blob.core.windows.net/c/x.tif?v=1&st=1&se=2&SP=rl&sig=S%3D#f"),
            (
                "https://a.blob.core.windows.net/c/x.tif?v=1#f".to_string(),
                Some("S%3D".into())
            )
        );
        assert_eq!(
            strip_sas("https://a.blob.core.windows.net/c/x.tif?st=1&sig=S"),
            (
                "https://a.blob.core.windows.net/c/x.tif".to_string(),
                Some("S".into())
            )
        );
        assert_eq!(
            strip_sas("https://a.blob.core.windows.net/c/x.tif?x=1"),
            (
                "https://a.blob.core.windows.net/c/x.tif?x=1".to_string(),
                None
            )
        );
        assert_eq!(token_sig("?st=1&sig=abc&sp=r"), Some("abc"));
        assert_eq!(token_sig("st=1"), None);
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
