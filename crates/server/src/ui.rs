//! The web dashboard: static files embedded in the binary at build time (crates/server/ui/),
//! served at `/` and `/ui/...`. No build step and no network at run time: the page is plain
//! JavaScript modules talking to the JSON API, with uPlot (vendored from npm, see
//! scripts/ui-vendor) for the charts. See ARCHITECTURE.md, "Dashboard".

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;

struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ct:literal) => {
        Asset {
            path: $path,
            content_type: $ct,
            bytes: include_bytes!(concat!("../ui/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("views.js", "text/javascript; charset=utf-8"),
    asset!("common.js", "text/javascript; charset=utf-8"),
    asset!("charts.js", "text/javascript; charset=utf-8"),
    asset!("overview.js", "text/javascript; charset=utf-8"),
    asset!("queue.js", "text/javascript; charset=utf-8"),
    asset!("queue-messages.js", "text/javascript; charset=utf-8"),
    asset!("queue-settings.js", "text/javascript; charset=utf-8"),
    asset!("subscriptions.js", "text/javascript; charset=utf-8"),
    asset!("replay.js", "text/javascript; charset=utf-8"),
    asset!("timers.js", "text/javascript; charset=utf-8"),
    asset!("ingest.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
];

/// Content hashes for ETags, computed once.
fn etags() -> &'static Vec<String> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &blake3::hash(a.bytes).to_hex()[..16]))
            .collect()
    })
}

fn serve(i: usize, req: &HeaderMap) -> Response {
    let a = &ASSETS[i];
    let etag = &etags()[i];
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    // Revalidate every time (cheap 304s): a new binary must never run with old page code.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, HeaderValue::from_str(etag).expect("ascii"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if a.content_type.starts_with("text/html") {
        // Only this origin's own files; the API is same-origin. uPlot sets inline styles.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                 connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    (h, a.bytes).into_response()
}

/// `GET /`, `/ui`, `/ui/`: the page itself.
pub async fn index(req: HeaderMap) -> Response {
    serve(0, &req)
}

/// `GET /ui/{path}`: an embedded file; other paths without a file extension get the page (its
/// views live in the URL fragment, so a bookmarked `/ui/queues` still opens the dashboard).
pub async fn asset(Path(path): Path<String>, req: HeaderMap) -> Response {
    if let Some(i) = ASSETS.iter().position(|a| a.path == path) {
        return serve(i, &req);
    }
    if !path.rsplit('/').next().unwrap_or("").contains('.') {
        return serve(0, &req);
    }
    ApiError::not_found(format!("no dashboard file {path:?}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_embedded() {
        let text = |a: &Asset| std::str::from_utf8(a.bytes).unwrap();
        let html = text(&ASSETS[0]);
        let modules: Vec<&Asset> = ASSETS
            .iter()
            .filter(|a| a.path.ends_with(".js") && !a.path.starts_with("vendor/"))
            .collect();
        // Every module another one imports is embedded, and every embedded module is loaded.
        let mut imported = vec!["app.js".to_string()];
        for m in &modules {
            for line in text(m).lines().filter(|l| l.starts_with("import ")) {
                let from = line
                    .rsplit("from './")
                    .next()
                    .unwrap()
                    .trim_end_matches("';");
                assert!(
                    ASSETS.iter().any(|a| a.path == from),
                    "{} imports {from}, which is not embedded",
                    m.path
                );
                imported.push(from.to_string());
            }
        }
        for m in &modules {
            assert!(
                imported.contains(&m.path.to_string()),
                "{} is embedded but never imported",
                m.path
            );
        }
        for a in ASSETS[1..].iter().filter(|a| {
            !a.path.ends_with(".js") || a.path.starts_with("vendor/") || a.path == "app.js"
        }) {
            assert!(
                html.contains(&format!("/ui/{}", a.path)),
                "index.html does not load {}",
                a.path
            );
        }
    }
}
