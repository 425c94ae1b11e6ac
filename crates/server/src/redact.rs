//! Secrets kept out of answers and logs. A push subscription (or a timer) carries credentials
//! for its endpoint: extra headers (`Authorization`, `X-Api-Key`, ...), a signing secret,
//! and sometimes credentials in the URL itself (`https://user:pass@host/`, `?token=...`).
//! Only a key that may change the subscription sees them in clear (`api/subscriptions.rs`);
//! everyone else, the attempts log and the logs see them masked by the functions here. The
//! signing secret is always masked, by the engine's `push::secret::mask`.

/// What a masked value shows.
pub const MASK: &str = "****";

/// A URL with its user information and the values of its query parameters masked
/// (`https://****@host/path?token=****`). Scheme, host, port, path and parameter names stay.
/// A string that does not parse as a URL is masked whole.
pub fn url(u: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(u) else {
        return MASK.to_string();
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Cannot fail for URLs that carry user information (they have a host).
        let _ = parsed.set_password(None);
        let _ = parsed.set_username(MASK);
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let masked = names
            .iter()
            .map(|k| format!("{k}={MASK}"))
            .collect::<Vec<_>>()
            .join("&");
        parsed.set_query(Some(&masked));
    }
    parsed.to_string()
}

/// Header values masked, names kept.
pub fn headers(
    h: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    h.keys().map(|k| (k.clone(), MASK.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            url("https://bob:hunter2@hooks.example.com:8443/in?token=abc&v=2"),
            "https://****@hooks.example.com:8443/in?token=****&v=****"
        );
        assert_eq!(url("https://key@h.example/x"), "https://****@h.example/x");
        assert_eq!(url("http://h.example/plain"), "http://h.example/plain");
        assert_eq!(url("not a url hunter2"), MASK);
    }
}
