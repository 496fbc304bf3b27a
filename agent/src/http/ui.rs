//! The web UI: hand-written HTML, CSS and JavaScript modules from `agent/ui/`, embedded in the
//! binary with `include_bytes!` and served under `/ui/` when `-ui` / `ui_config.enabled` is set
//! (on in `-dev`); `/` then redirects to `/ui/`.
//!
//! There is no front-end build step: the files in `agent/ui/` are what the browser runs, so the
//! embedded copy cannot go stale. The UI talks to the agent only through the public `/v1` API
//! (whatever a token may do there, the UI may do), so this module knows nothing of the state
//! store. Every answer carries an `ETag` (FNV-1a of the content, computed once) with
//! `Cache-Control: no-cache`, so a browser revalidates and gets a 304 until the binary changes,
//! and a Content-Security-Policy that allows scripts and styles from the agent only: no inline
//! script, no `eval`, no other origin.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::HttpError;

/// The policy sent with every UI file. `connect-src 'self'` keeps the UI to this agent's API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its path under `/ui/`, its content type and its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($path:literal, $ctype:expr) => {
        Asset {
            path: $path,
            content_type: $ctype,
            body: include_bytes!(concat!("../../ui/", $path)),
        }
    };
}

/// Every file of the UI. A new file in `agent/ui/` is served once it is listed here.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("health.js", JS),
    asset!("pages/services.js", JS),
    asset!("pages/service.js", JS),
    asset!("pages/nodes.js", JS),
    asset!("pages/node.js", JS),
    asset!("pages/kv.js", JS),
    asset!("pages/members.js", JS),
    asset!("pages/sessions.js", JS),
];

/// The routes of the UI, or when it is off a `/` that says how to turn it on.
pub fn routes<S: Clone + Send + Sync + 'static>(enabled: bool) -> Router<S> {
    if !enabled {
        return Router::new().route("/", get(disabled));
    }
    Router::new()
        .route("/", get(to_ui))
        .route("/ui", get(to_ui))
        .route("/ui/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move { serve(&path, &headers) }),
        )
}

/// A temporary redirect: the same agent may run without the UI tomorrow, and a browser keeps a
/// permanent one.
async fn to_ui() -> Redirect {
    Redirect::temporary("/ui/")
}

async fn disabled() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "Muster agent: UI disabled. To enable it, start the agent with -ui or set \
         ui_config.enabled = true in its configuration, and restart.",
    )
}

/// The strong ETag of each asset, in `ASSETS` order.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{:016x}\"", crate::local::fnv1a64(a.body)))
            .collect()
    })
}

/// Whether `If-None-Match` names `etag` (a list, `*`, or a weak form of it).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return HttpError::new(StatusCode::NOT_FOUND, format!("no UI file {path:?}"))
            .into_response();
    };
    let asset = &ASSETS[i];
    let etag = etags().get(i).map(String::as_str).unwrap_or("\"0\"");
    let mut resp = if not_modified(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(router: Router, uri: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::builder().uri(uri);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        let req = req.body(Body::empty()).expect("request");
        router.oneshot(req).await.expect("infallible")
    }

    #[test]
    fn every_asset_is_embedded_and_index_loads_only_listed_scripts() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.path);
        }
        let index = std::str::from_utf8(ASSETS[0].body).expect("index.html is UTF-8");
        assert!(index.contains("src=\"app.js\""), "index.html loads app.js");
        // No inline script: every <script> names a src.
        for part in index.split("<script").skip(1) {
            assert!(
                part.trim_start().starts_with("type=\"module\" src="),
                "{part}"
            );
        }
    }

    #[test]
    fn every_file_of_the_ui_directory_is_served() {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            let entries = std::fs::read_dir(dir).expect("read agent/ui");
            for e in entries {
                let path = e.expect("dir entry").path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if let Ok(rel) = path.strip_prefix(base) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut files = Vec::new();
        walk(&base, &base, &mut files);
        for f in &files {
            assert!(
                ASSETS.iter().any(|a| a.path == f),
                "agent/ui/{f} is not listed in ASSETS"
            );
        }
        assert_eq!(files.len(), ASSETS.len());
    }

    #[tokio::test]
    async fn assets_have_types_etags_and_the_policy_and_revalidate_to_304() {
        let router: Router = routes(true);
        let resp = call(router.clone(), "/ui/pages/kv.js", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h[header::CONTENT_TYPE], JS);
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        let etag = h[header::ETAG].to_str().expect("ascii").to_string();
        let again = call(
            router.clone(),
            "/ui/pages/kv.js",
            Some(&format!("W/{etag}")),
        )
        .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = call(router.clone(), "/ui/pages/kv.js", Some("\"nope\"")).await;
        assert_eq!(other.status(), StatusCode::OK);
        let missing = call(router, "/ui/nope.js", None).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn off_means_no_ui_files() {
        let router: Router = routes(false);
        assert_eq!(
            call(router.clone(), "/ui/", None).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(router, "/", None).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
