//! End-to-end tests of the web UI's serving: `/ui/` answers the embedded index.html with its
//! content type and policy, `/` redirects there, and the UI is off unless `-ui` (or `-dev`)
//! turns it on. What the pages do in a browser is tested by `tests/ui/` (playwright-core).

mod common;

use common::{send, AgentBuilder, REQUEST_TIMEOUT};

/// A loopback client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("build HTTP client")
}

async fn get(base: &str, path: &str) -> common::Resp {
    send(
        &no_redirects(),
        "GET",
        &format!("{base}{path}"),
        None,
        REQUEST_TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test]
async fn dev_serves_the_ui_and_redirects_the_root_to_it() {
    let a = AgentBuilder::dev().start().await;
    let base = a.base_url();

    let index = get(&base, "/ui/").await;
    index.expect_status(200);
    assert_eq!(
        index.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert!(
        index.text().contains("<title>Muster</title>"),
        "{}",
        index.text()
    );
    let csp = index.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let etag = index.header("etag").expect("an ETag");

    // A browser that has the file revalidates and gets a 304.
    let revalidated = no_redirects()
        .get(format!("{base}/ui/"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("revalidate /ui/");
    assert_eq!(revalidated.status().as_u16(), 304);

    let js = get(&base, "/ui/app.js").await;
    js.expect_status(200);
    assert_eq!(
        js.header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    let css = get(&base, "/ui/style.css").await;
    assert_eq!(
        css.header("content-type").as_deref(),
        Some("text/css; charset=utf-8")
    );

    for path in ["/", "/ui"] {
        let r = get(&base, path).await;
        assert!(
            (300..400).contains(&r.status),
            "{path} redirects: {}",
            r.status
        );
        assert_eq!(r.header("location").as_deref(), Some("/ui/"), "{path}");
    }
    get(&base, "/ui/no-such-file.js").await.expect_status(404);
    // The API is unaffected.
    get(&base, "/v1/status/leader").await.expect_status(200);
}

#[tokio::test]
async fn a_server_without_ui_serves_no_ui_and_with_ui_does() {
    let off = AgentBuilder::server().start().await;
    let base = off.base_url();
    get(&base, "/ui/").await.expect_status(404);
    get(&base, "/ui/app.js").await.expect_status(404);
    let root = get(&base, "/").await;
    root.expect_status(404);
    assert!(root.text().contains("UI disabled"), "{}", root.text());

    let on = AgentBuilder::server().args(["-ui"]).start().await;
    get(&on.base_url(), "/ui/").await.expect_status(200);

    let by_config = AgentBuilder::server()
        .config_file("ui.json", r#"{"ui_config": {"enabled": true}}"#)
        .start()
        .await;
    get(&by_config.base_url(), "/ui/").await.expect_status(200);

    let dev_off = AgentBuilder::dev().args(["-ui=false"]).start().await;
    get(&dev_off.base_url(), "/ui/").await.expect_status(404);
}
