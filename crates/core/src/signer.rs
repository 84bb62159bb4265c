//! Signers that readers can ask again for a readable href when a signature expires mid-run.
//!
//! A node that signs asset hrefs (the `sign` kind) registers a [`HrefSigner`] under an id and
//! writes that id into each asset it signed, as the [`SIGNER_FIELD`] member. A node that reads
//! the asset later (`stack`) looks the signer up by that id and asks it for a fresh href before
//! the read, when the signature it holds is about to expire, and once more after the server
//! refused it (HTTP 403): a long run outlives its tokens without failing.
//!
//! The registry is process-wide because signing and reading happen in different nodes that share
//! nothing but the value between them; the id in the asset is plain text (the token endpoint),
//! never a secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The asset member naming the signer that signed its href.
pub const SIGNER_FIELD: &str = "flow:signer";

/// Makes hrefs readable, renewing its credentials as needed.
pub trait HrefSigner: Send + Sync {
    /// A readable form of `href` (which may carry an older signature). With `renew`, credentials
    /// held for it are dropped and fetched again (the server refused them); without, held ones are
    /// used while they remain valid long enough.
    ///
    /// # Errors
    /// A message saying why no signature could be had (the endpoint's URL and status, never a
    /// token).
    fn sign(&self, href: &str, renew: bool) -> Result<String, String>;
}

type SignerMap = HashMap<String, Arc<dyn HrefSigner>>;

fn signers() -> &'static Mutex<SignerMap> {
    static SIGNERS: OnceLock<Mutex<SignerMap>> = OnceLock::new();
    SIGNERS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Registers `signer` under `id`, replacing any signer registered under it before.
pub fn register(id: &str, signer: Arc<dyn HrefSigner>) {
    if let Ok(mut map) = signers().lock() {
        map.insert(id.to_string(), signer);
    }
}

/// The signer registered under `id`, if any.
pub fn lookup(id: &str) -> Option<Arc<dyn HrefSigner>> {
    signers().lock().ok()?.get(id).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(Mutex<u32>);

    impl HrefSigner for Counting {
        fn sign(&self, href: &str, renew: bool) -> Result<String, String> {
            let mut n = self.0.lock().map_err(|e| e.to_string())?;
            if renew || *n == 0 {
                *n += 1;
            }
            Ok(format!(
                "{}?sig=t{n}",
                href.split('?').next().unwrap_or(href)
            ))
        }
    }

    #[test]
    fn a_registered_signer_is_found_by_its_id_and_renews_on_request() {
        register("test:counting", Arc::new(Counting(Mutex::new(0))));
        let s = lookup("test:counting").expect("registered");
        assert_eq!(
            s.sign("https://h/a.tif", false).unwrap(),
            "https://h/a.tif?sig=t1"
        );
        assert_eq!(
            s.sign("https://h/a.tif?sig=t1", false).unwrap(),
            "https://h/a.tif?sig=t1"
        );
        assert_eq!(
            s.sign("https://h/a.tif?sig=t1", true).unwrap(),
            "https://h/a.tif?sig=t2"
        );
        assert!(lookup("test:absent").is_none());
    }
}
