//! Secrets out of messages: signed-URL query parameters (Azure SAS `sig`, S3 presigned
//! `X-Amz-Signature`, tokens) are replaced by `REDACTED` before a message reaches stderr, a log
//! or `run.json`. Every error and warning the engine reports goes through [`secrets`].

/// Query parameters whose values are secrets (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "token",
    "access_token",
    "code",
    "skoid",
    "sktid",
    "api_key",
    "apikey",
    "subscription-key",
];

/// `text` with the value of every secret query parameter (`?sig=...`, `&token=...`) replaced
/// by `REDACTED`. Text without such parameters is returned unchanged.
pub fn secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['?', '&']) {
        let (before, after) = rest.split_at(pos + 1);
        out.push_str(before);
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(after.len());
        let (name, tail) = after.split_at(name_len);
        if tail.starts_with('=') && SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            let value_len = tail[1..]
                .find(|c: char| {
                    c == '&' || c == '#' || c.is_whitespace() || "'\"<>)]},;`".contains(c)
                })
                .unwrap_or(tail.len() - 1);
            out.push_str(name);
            out.push_str("=REDACTED");
            rest = &tail[1 + value_len..];
        } else {
            out.push_str(name);
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_and_presigned_signatures_are_redacted() {
        let url = "https://acct.blob.core.windows.net/c/B04.tif?st=2021&se=2021-08-04&sp=rl&sv=2021&sr=c&skoid=abc&sig=AbC%2Bd%3D";
        let r = secrets(&format!("read failed: '{url}': HTTP 403"));
        assert!(!r.contains("AbC"), "{r}");
        assert!(!r.contains("skoid=abc"), "{r}");
        assert!(r.contains("sig=REDACTED': HTTP 403"), "{r}");
        assert!(r.contains("se=2021-08-04"), "expiry is not secret: {r}");
        let s3 = secrets("GET /b/k?X-Amz-Credential=AKIA%2F&X-Amz-Signature=deadbeef done");
        assert_eq!(
            s3,
            "GET /b/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED done"
        );
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for t in ["", "a?b=c&d", "no query", "x?signal=1&sigma=2", "é?sig"] {
            assert_eq!(secrets(t), t);
        }
    }
}
