//! End-to-end tests of `/v1/kv` against the real binary, written from Consul's documentation of
//! the KV endpoint: shapes, status codes, headers, CAS, flags, recurse/keys/separator, delete.

mod common;

use common::{b64, Agent};
use serde_json::{json, Value};

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not an unsigned number in {v}"))
}

fn keys_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {list}"))
        .iter()
        .map(|e| e["Key"].as_str().expect("Key is a string").to_string())
        .collect()
}

#[tokio::test]
async fn put_answers_true_and_get_answers_consuls_entry_shape() {
    let a = Agent::dev().await;
    let r = a.put("/v1/kv/shape/foo", "bar").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));

    let r = a.get("/v1/kv/shape/foo").await;
    r.expect_status(200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "Content-Type {ct:?}");
    let v = r.json();
    let arr = v.as_array().expect("a JSON array");
    assert_eq!(arr.len(), 1, "{v}");
    let e = &arr[0];
    for field in [
        "LockIndex",
        "Key",
        "Flags",
        "Value",
        "CreateIndex",
        "ModifyIndex",
    ] {
        assert!(e.get(field).is_some(), "field {field} missing in {e}");
    }
    assert_eq!(e["Key"], json!("shape/foo"));
    assert_eq!(e["Flags"], json!(0));
    assert_eq!(e["LockIndex"], json!(0));
    assert_eq!(e["Value"], json!("YmFy"), "Value is base64 of \"bar\"");
    if let Some(s) = e.get("Session") {
        assert!(s.is_string(), "Session, when present, is a string: {e}");
    }
    let created = u(e, "CreateIndex");
    assert!(created > 0, "{e}");
    assert_eq!(
        u(e, "ModifyIndex"),
        created,
        "a new key: ModifyIndex == CreateIndex"
    );
    assert_eq!(
        r.index(),
        created,
        "X-Consul-Index of a single key is its ModifyIndex"
    );

    // An update moves ModifyIndex, not CreateIndex.
    a.kv_put("shape/foo", "baz").await;
    let e2 = a.kv_entry("shape/foo").await.expect("key exists");
    assert_eq!(u(&e2, "CreateIndex"), created);
    assert!(u(&e2, "ModifyIndex") > created, "{e2}");
    assert_eq!(b64(&e2["Value"]).as_deref(), Some(&b"baz"[..]));
}

#[tokio::test]
async fn raw_returns_exactly_the_stored_bytes() {
    let a = Agent::dev().await;
    let bytes: Vec<u8> = (0u8..=255).chain([0, 0, 10, 13]).collect();
    a.kv_put("raw/bin", &bytes).await;
    let r = a.get("/v1/kv/raw/bin?raw").await;
    r.expect_status(200);
    assert_eq!(r.body, bytes, "?raw must return the value byte for byte");
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain"),
        "?raw is served as text/plain as Consul does (no sniffing into HTML): {ct:?}"
    );
    // And JSON mode returns the same bytes base64-encoded.
    let e = a.kv_entry("raw/bin").await.expect("exists");
    assert_eq!(b64(&e["Value"]), Some(bytes));
}

#[tokio::test]
async fn missing_key_is_404_with_empty_body_and_an_index() {
    let a = Agent::dev().await;
    let r = a.get("/v1/kv/no/such/key").await;
    r.expect_status(404);
    assert!(r.body.is_empty(), "404 body must be empty: {:?}", r.text());
    assert!(
        r.index() > 0,
        "a 404 still carries X-Consul-Index (clients block on it)"
    );
    let r = a.get("/v1/kv/no/such/key?raw").await;
    r.expect_status(404);
    let r = a.get("/v1/kv/no/such/prefix/?recurse").await;
    r.expect_status(404);
    assert!(r.body.is_empty(), "{:?}", r.text());
}

#[tokio::test]
async fn recurse_lists_a_prefix_in_key_order() {
    let a = Agent::dev().await;
    for k in ["rec/b", "rec/a", "rec/d/e", "rec/c", "recx", "other"] {
        a.kv_put(k, k).await;
    }
    let r = a.get("/v1/kv/rec/?recurse").await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(keys_of(&v), ["rec/a", "rec/b", "rec/c", "rec/d/e"]);
    for e in v.as_array().expect("array") {
        assert_eq!(
            b64(&e["Value"]).expect("value"),
            e["Key"].as_str().expect("key").as_bytes()
        );
    }
    let max = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| u(e, "ModifyIndex"))
        .max()
        .expect("non-empty");
    assert_eq!(
        r.index(),
        max,
        "X-Consul-Index of a list is its highest ModifyIndex"
    );

    // A prefix is a string prefix, not a path: "rec" also matches "recx".
    let r = a.get("/v1/kv/rec?recurse").await;
    assert_eq!(
        keys_of(&r.json()),
        ["rec/a", "rec/b", "rec/c", "rec/d/e", "recx"]
    );
    // recurse=true is the same as bare recurse.
    let r = a.get("/v1/kv/rec/?recurse=true").await;
    assert_eq!(keys_of(&r.json()).len(), 4);
    // The whole store.
    let r = a.get("/v1/kv/?recurse").await;
    r.expect_status(200);
    assert_eq!(keys_of(&r.json()).len(), 6);
}

#[tokio::test]
async fn keys_with_and_without_separator() {
    let a = Agent::dev().await;
    for k in ["ks/a", "ks/b/c", "ks/b/d", "ks/e/f/g", "ksz"] {
        a.kv_put(k, "v").await;
    }
    let r = a.get("/v1/kv/ks/?keys").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(["ks/a", "ks/b/c", "ks/b/d", "ks/e/f/g"]));
    assert!(r.index() > 0);

    let r = a.get("/v1/kv/ks/?keys&separator=/").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(["ks/a", "ks/b/", "ks/e/"]));

    let r = a.get("/v1/kv/?keys&separator=/").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(["ks/", "ksz"]));

    // An empty prefix that matches nothing is 404, the root is an (empty or not) list.
    let r = a.get("/v1/kv/nothing/here/?keys").await;
    r.expect_status(404);
}

#[tokio::test]
async fn root_keys_on_an_empty_store_is_an_empty_list() {
    let a = Agent::dev().await;
    let r = a.get("/v1/kv/?keys").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!([]));
}

#[tokio::test]
async fn flags_are_stored_and_reset_when_not_given() {
    let a = Agent::dev().await;
    let r = a.put("/v1/kv/fl/x?flags=42", "v").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    let e = a.kv_entry("fl/x").await.expect("exists");
    assert_eq!(e["Flags"], json!(42));

    let max = u64::MAX;
    a.put(&format!("/v1/kv/fl/x?flags={max}"), "v")
        .await
        .expect_status(200);
    let e = a.kv_entry("fl/x").await.expect("exists");
    assert_eq!(
        e["Flags"].as_u64(),
        Some(max),
        "flags are a full uint64: {e}"
    );

    // A PUT without ?flags stores 0, as Consul does.
    a.kv_put("fl/x", "w").await;
    let e = a.kv_entry("fl/x").await.expect("exists");
    assert_eq!(e["Flags"], json!(0));
}

#[tokio::test]
async fn cas_zero_creates_only() {
    let a = Agent::dev().await;
    let r = a.put("/v1/kv/cas/new?cas=0", "first").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    let before = a.kv_entry("cas/new").await.expect("created");

    let r = a.put("/v1/kv/cas/new?cas=0", "second").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(false), "cas=0 on an existing key is false");
    let after = a.kv_entry("cas/new").await.expect("still there");
    assert_eq!(after, before, "a failed CAS changes nothing");
}

#[tokio::test]
async fn cas_with_modify_index() {
    let a = Agent::dev().await;
    a.kv_put("cas/k", "v1").await;
    let idx = u(&a.kv_entry("cas/k").await.expect("exists"), "ModifyIndex");

    let r = a.put(&format!("/v1/kv/cas/k?cas={idx}"), "v2").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    let e = a.kv_entry("cas/k").await.expect("exists");
    assert_eq!(b64(&e["Value"]).as_deref(), Some(&b"v2"[..]));
    assert!(u(&e, "ModifyIndex") > idx);

    // The old index is stale now.
    let r = a.put(&format!("/v1/kv/cas/k?cas={idx}"), "v3").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(false));
    assert_eq!(a.kv_value("cas/k").await.as_deref(), Some(&b"v2"[..]));

    // A non-zero cas on a missing key is false and creates nothing.
    let r = a.put(&format!("/v1/kv/cas/missing?cas={idx}"), "x").await;
    assert_eq!(r.json(), json!(false));
    assert!(a.kv_entry("cas/missing").await.is_none());
}

#[tokio::test]
async fn delete_single_recurse_and_cas() {
    let a = Agent::dev().await;
    for k in ["del/a", "del/b", "del/sub/c", "delx", "keep"] {
        a.kv_put(k, "v").await;
    }
    let r = a.delete("/v1/kv/del/a").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    assert!(a.kv_entry("del/a").await.is_none());

    // Deleting a missing key is not an error.
    let r = a.delete("/v1/kv/del/never").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));

    // DELETE ?cas: stale index false (key stays), current index true (key goes).
    let idx = u(&a.kv_entry("del/b").await.expect("exists"), "ModifyIndex");
    let r = a.delete(&format!("/v1/kv/del/b?cas={}", idx + 1000)).await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(false));
    assert!(a.kv_entry("del/b").await.is_some());
    let r = a.delete(&format!("/v1/kv/del/b?cas={idx}")).await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    assert!(a.kv_entry("del/b").await.is_none());

    // DELETE ?recurse removes exactly the prefix.
    let r = a.delete("/v1/kv/del/?recurse").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    assert!(a.kv_entry("del/sub/c").await.is_none());
    assert!(
        a.kv_entry("delx").await.is_some(),
        "del/ does not match delx"
    );
    assert!(a.kv_entry("keep").await.is_some());
}

#[tokio::test]
async fn empty_body_stores_a_null_value() {
    let a = Agent::dev().await;
    let r = a.request("PUT", "/v1/kv/empty/k", None).await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    let e = a.kv_entry("empty/k").await.expect("exists");
    assert_eq!(e["Value"], Value::Null, "an empty value is JSON null: {e}");
    let r = a.get("/v1/kv/empty/k?raw").await;
    r.expect_status(200);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn read_headers_say_index_leader_and_contact() {
    let a = Agent::dev().await;
    a.kv_put("hdr/k", "v").await;
    for path in [
        "/v1/kv/hdr/k",
        "/v1/kv/hdr/?recurse",
        "/v1/kv/hdr/?keys",
        "/v1/kv/hdr/missing",
    ] {
        let r = a.get(path).await;
        assert!(r.index() > 0, "{path}: X-Consul-Index");
        assert_eq!(
            r.header("X-Consul-KnownLeader").as_deref(),
            Some("true"),
            "{path}: X-Consul-KnownLeader, headers {:?}",
            r.headers
        );
        let lc = r
            .header("X-Consul-LastContact")
            .unwrap_or_else(|| panic!("{path}: no X-Consul-LastContact: {:?}", r.headers));
        assert!(lc.parse::<u64>().is_ok(), "{path}: LastContact {lc:?}");
    }
}

#[tokio::test]
async fn pretty_prints_the_same_json() {
    let a = Agent::dev().await;
    a.kv_put("pretty/k", "v").await;
    let plain = a.get("/v1/kv/pretty/k").await;
    let pretty = a.get("/v1/kv/pretty/k?pretty").await;
    pretty.expect_status(200);
    assert_eq!(pretty.json(), plain.json());
    assert!(
        pretty.text().contains("\n    "),
        "?pretty is indented: {:?}",
        pretty.text()
    );
}

#[tokio::test]
async fn empty_key_without_recurse_or_keys_is_400() {
    let a = Agent::dev().await;
    a.kv_put("some/key", "v").await;
    let r = a.get("/v1/kv/").await;
    r.expect_status(400);
    assert!(!r.body.is_empty(), "a 400 says what was wrong");
    let r = a.put("/v1/kv/", "v").await;
    r.expect_status(400);
    let r = a.delete("/v1/kv/").await;
    r.expect_status(400);
    assert!(
        a.kv_entry("some/key").await.is_some(),
        "a DELETE of the empty key without recurse must not delete anything"
    );
}

#[tokio::test]
async fn a_value_of_exactly_512_kib_is_accepted() {
    let a = Agent::dev().await;
    let v = vec![b'x'; 512 * 1024];
    a.kv_put("big/ok", &v).await;
    assert_eq!(a.kv_value("big/ok").await.map(|b| b.len()), Some(v.len()));
}

#[tokio::test]
async fn a_key_with_a_trailing_slash_is_a_folder_key() {
    let a = Agent::dev().await;
    let r = a.request("PUT", "/v1/kv/folder/", None).await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    a.kv_put("folder/inside", "v").await;
    let r = a.get("/v1/kv/folder/?keys").await;
    assert_eq!(r.json(), json!(["folder/", "folder/inside"]));
    let e = a.kv_entry("folder/").await.expect("the folder key itself");
    assert_eq!(e["Key"], json!("folder/"));
}

#[tokio::test]
async fn raw_is_ignored_for_a_recursive_get() {
    let a = Agent::dev().await;
    a.kv_put("rr/a", "1").await;
    let r = a.get("/v1/kv/rr/?recurse&raw").await;
    r.expect_status(200);
    assert_eq!(keys_of(&r.json()), ["rr/a"], "a list stays JSON");
}

#[tokio::test]
async fn consistent_stale_and_dc_reads() {
    let a = Agent::dev().await;
    a.kv_put("cons/k", "v").await;
    let plain = a.get("/v1/kv/cons/k").await.json();
    for q in ["consistent", "stale", "dc=dc1", "stale&dc=dc1"] {
        let r = a.get(&format!("/v1/kv/cons/k?{q}")).await;
        r.expect_status(200);
        assert_eq!(r.json(), plain, "?{q}");
        assert!(r.index() > 0, "?{q}");
        assert!(r.header("X-Consul-LastContact").is_some(), "?{q}");
        assert_eq!(
            r.header("X-Consul-KnownLeader").as_deref(),
            Some("true"),
            "?{q}"
        );
    }
    // Consul answers a datacenter it has no path to with a 500 "No path to datacenter".
    let r = a.get("/v1/kv/cons/k?dc=nosuchdc").await;
    r.expect_status(500);
    assert!(
        r.text().contains("No path to datacenter"),
        "body {:?}",
        r.text()
    );
    let r = a.put("/v1/kv/cons/k?dc=nosuchdc", "changed").await;
    r.expect_status(500);
    assert_eq!(a.kv_value("cons/k").await.as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn the_old_seperator_spelling_is_accepted() {
    let a = Agent::dev().await;
    a.kv_put("sp/a/b", "v").await;
    let r = a.get("/v1/kv/sp/?keys&seperator=/").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(["sp/a/"]));
}

#[tokio::test]
async fn every_write_moves_modify_index_even_with_the_same_value() {
    let a = Agent::dev().await;
    a.kv_put("same/k", "v").await;
    let first = a.kv_entry("same/k").await.expect("exists");
    a.kv_put("same/k", "v").await;
    let second = a.kv_entry("same/k").await.expect("exists");
    assert!(
        u(&second, "ModifyIndex") > u(&first, "ModifyIndex"),
        "{first} then {second}"
    );
    // Delete and create again: a new CreateIndex.
    a.delete("/v1/kv/same/k").await.expect_status(200);
    a.kv_put("same/k", "v").await;
    let third = a.kv_entry("same/k").await.expect("exists");
    assert!(
        u(&third, "CreateIndex") > u(&second, "ModifyIndex"),
        "{third}"
    );
    assert_eq!(u(&third, "CreateIndex"), u(&third, "ModifyIndex"));
}

#[tokio::test]
async fn keys_sort_by_bytes() {
    let a = Agent::dev().await;
    for k in [
        "ord/b", "ord/B", "ord/a", "ord/_", "ord/A0", "ord/a/b", "ord/a-b",
    ] {
        a.kv_put(k, "v").await;
    }
    let r = a.get("/v1/kv/ord/?keys").await;
    assert_eq!(
        r.json(),
        json!(["ord/A0", "ord/B", "ord/_", "ord/a", "ord/a-b", "ord/a/b", "ord/b"])
    );
}

#[tokio::test]
async fn concurrent_cas_creates_exactly_once_and_cas_increments_lose_nothing() {
    let a = Agent::dev().await;
    // 20 clients race to create the same key with cas=0: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = a.client();
        let url = format!("{}/v1/kv/race/once?cas=0", a.base_url());
        tasks.push(tokio::spawn(async move {
            let r = common::send(
                &client,
                "PUT",
                &url,
                Some(format!("{i}").into_bytes()),
                common::REQUEST_TIMEOUT,
            )
            .await
            .expect("PUT");
            r.body == b"true"
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.expect("task") {
            wins += 1;
        }
    }
    assert_eq!(wins, 1, "cas=0 must let exactly one creator win");

    // 4 clients x 15 increments of one counter through read + cas: none lost.
    a.kv_put("race/counter", "0").await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = a.client();
        let base = a.base_url();
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                for attempt in 0.. {
                    assert!(attempt < 1000, "no CAS progress");
                    let r = common::send(
                        &client,
                        "GET",
                        &format!("{base}/v1/kv/race/counter"),
                        None,
                        common::REQUEST_TIMEOUT,
                    )
                    .await
                    .expect("GET");
                    let e = &r.json()[0];
                    let n: u64 = String::from_utf8(b64(&e["Value"]).expect("value"))
                        .expect("utf8")
                        .parse()
                        .expect("number");
                    let mi = e["ModifyIndex"].as_u64().expect("ModifyIndex");
                    let r = common::send(
                        &client,
                        "PUT",
                        &format!("{base}/v1/kv/race/counter?cas={mi}"),
                        Some((n + 1).to_string().into_bytes()),
                        common::REQUEST_TIMEOUT,
                    )
                    .await
                    .expect("PUT");
                    if r.body == b"true" {
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("incrementer");
    }
    assert_eq!(
        a.kv_value("race/counter").await.as_deref(),
        Some(&b"60"[..])
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: the right status, a body that says what was wrong, and no change of state.
// ---------------------------------------------------------------------------------------------

/// The key's full entry and the store's key list, to compare before and after bad requests.
async fn state_of(a: &Agent) -> (Option<Value>, Value) {
    let entry = a.kv_entry("bad/existing").await;
    let keys = a.get("/v1/kv/?keys").await.json();
    (entry, keys)
}

#[tokio::test]
async fn bad_query_parameters_are_400_and_change_nothing() {
    let a = Agent::dev().await;
    a.kv_put("bad/existing", "original").await;
    let before = state_of(&a).await;

    let r = a.get("/v1/kv/bad/existing?index=abc").await;
    r.expect_status(400);
    assert!(
        r.text().to_lowercase().contains("index"),
        "the 400 names `index`: {:?}",
        r.text()
    );

    let r = a.get("/v1/kv/bad/existing?index=1&wait=xyz").await;
    r.expect_status(400);
    assert!(
        r.text().to_lowercase().contains("wait"),
        "the 400 names `wait`: {:?}",
        r.text()
    );
    // A wait is a Go duration: a bare number has no unit and is refused, as by Consul.
    let r = a.get("/v1/kv/bad/existing?index=1&wait=5").await;
    assert_eq!(r.status, 400, "wait=5: body {:?}", r.text());
    let r = a.get("/v1/kv/bad/existing?index=-1").await;
    assert_eq!(r.status, 400, "index=-1: body {:?}", r.text());
    let r = a
        .get("/v1/kv/bad/existing?index=18446744073709551616")
        .await;
    assert_eq!(r.status, 400, "index past u64: body {:?}", r.text());

    for path in [
        "/v1/kv/bad/existing?flags=abc",
        "/v1/kv/bad/new?flags=abc",
        "/v1/kv/bad/existing?flags=-1",
        "/v1/kv/bad/existing?cas=abc",
        "/v1/kv/bad/new?cas=abc",
        "/v1/kv/bad/existing?cas=-5",
        "/v1/kv/bad/existing?flags=18446744073709551616",
        "/v1/kv/bad/existing?cas=18446744073709551616",
    ] {
        let r = a.put(path, "changed").await;
        assert_eq!(
            r.status,
            400,
            "PUT {path}: status {} body {:?}",
            r.status,
            r.text()
        );
        assert!(!r.body.is_empty(), "PUT {path}: the 400 says why");
    }
    let r = a.delete("/v1/kv/bad/existing?cas=abc").await;
    assert_eq!(r.status, 400, "DELETE ?cas=abc: body {:?}", r.text());

    assert_eq!(state_of(&a).await, before, "bad requests changed state");
}

#[tokio::test]
async fn a_value_over_512_kib_is_413_and_not_stored() {
    let a = Agent::dev().await;
    a.kv_put("bad/existing", "original").await;
    let before = state_of(&a).await;
    let big = vec![b'y'; 512 * 1024 + 1];
    // A client of its own without connection reuse: whether the connection survives a 413 is
    // the business of `a_413_does_not_break_a_kept_alive_connection`.
    let once = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    for key in ["bad/existing", "bad/toolarge"] {
        let url = format!("{}/v1/kv/{key}", a.base_url());
        let r = common::send(
            &once,
            "PUT",
            &url,
            Some(big.clone()),
            common::REQUEST_TIMEOUT,
        )
        .await
        .expect("PUT");
        r.expect_status(413);
        assert!(!r.body.is_empty(), "the 413 says why");
    }
    assert_eq!(state_of(&a).await, before, "a 413 changed state");
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let a = Agent::dev().await;
    a.kv_put("bad/existing", "original").await;
    let before = state_of(&a).await;

    a.get("/v1/nope").await.expect_status(404);
    a.get("/v1/kv-nope/x").await.expect_status(404);
    a.request("POST", "/v1/status/leader", Some(b"x"))
        .await
        .expect_status(405);
    a.request("DELETE", "/v1/status/leader", None)
        .await
        .expect_status(405);
    a.request("POST", "/v1/kv/bad/existing", Some(b"changed"))
        .await
        .expect_status(405);
    a.request("PATCH", "/v1/kv/bad/existing", Some(b"changed"))
        .await
        .expect_status(405);

    assert_eq!(state_of(&a).await, before, "bad requests changed state");
}

/// Sends a raw HTTP/1.1 request over TCP and returns the status code (for bodies reqwest will
/// not send as-is, like a chunked upload without Content-Length).
async fn raw_http_status(addr: &str, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The agent may answer (and close) before it has read the whole body: ignore write errors.
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(common::REQUEST_TIMEOUT, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in answer {text:?}"))
}

#[tokio::test]
async fn a_chunked_value_over_512_kib_is_413_too() {
    // Consul checks only Content-Length; a chunked body must not get around the limit.
    let a = Agent::dev().await;
    let mut req = format!(
        "PUT /v1/kv/bad/chunked HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        a.http_addr()
    )
    .into_bytes();
    let chunk = vec![b'z'; 64 * 1024];
    for _ in 0..10 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let status = raw_http_status(&a.http_addr(), &req).await;
    assert_eq!(status, 413, "640 KiB sent chunked");
    assert!(a.kv_entry("bad/chunked").await.is_none());
}

/// Reads one HTTP/1.1 response (head + Content-Length body) from `r`; `None` on EOF or error.
async fn read_response<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match r.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

/// Sends `PUT path` with a body of `len` bytes on a raw connection, expects `status`, then
/// checks that the connection still serves a request unless the answer said
/// `Connection: close`. An HTTP/1.1 client keeps the connection after a response unless it says
/// `Connection: close`; Go's server (Consul) either drains an unread body or says so, while an
/// agent that closes silently makes the client's next request on that connection fail.
async fn assert_connection_survives(a: &Agent, path: &str, len: usize, status: u16) {
    use tokio::io::AsyncWriteExt as _;
    let stream = tokio::net::TcpStream::connect(a.http_addr())
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let big = vec![b'q'; len];
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\n\r\n",
        a.http_addr()
    );
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&big).await;
        wr
    });
    let (head, _) = tokio::time::timeout(common::REQUEST_TIMEOUT, read_response(&mut rd))
        .await
        .expect("bounded")
        .unwrap_or_else(|| panic!("no response to PUT {path}"));
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status}")),
        "PUT {path}: {head}"
    );
    if head.to_ascii_lowercase().contains("connection: close") {
        return; // the agent said it closes: a client opens a new connection. Fine.
    }
    let mut wr = tokio::time::timeout(common::REQUEST_TIMEOUT, writer)
        .await
        .expect("the body was written or refused in time")
        .expect("writer task");
    let get = format!(
        "GET /v1/status/leader HTTP/1.1\r\nHost: {}\r\n\r\n",
        a.http_addr()
    );
    let sent = wr.write_all(get.as_bytes()).await;
    let answer = tokio::time::timeout(common::REQUEST_TIMEOUT, read_response(&mut rd))
        .await
        .expect("bounded");
    match (sent, answer) {
        (Ok(()), Some((h, _))) => assert!(h.starts_with("HTTP/1.1 200"), "{h}"),
        (sent, answer) => panic!(
            "the {status} to PUT {path} had no `Connection: close`, yet the agent dropped the \
             connection: the next request on it failed (write: {sent:?}, answer: {answer:?}); \
             the {status}'s head:\n{head}"
        ),
    }
}

#[tokio::test]
async fn a_413_does_not_break_a_kept_alive_connection() {
    let a = Agent::dev().await;
    assert_connection_survives(&a, "/v1/kv/ka/big", 600 * 1024, 413).await;
}

#[tokio::test]
async fn a_400_with_an_unread_body_does_not_break_a_kept_alive_connection() {
    let a = Agent::dev().await;
    assert_connection_survives(&a, "/v1/kv/ka/flags?flags=abc", 200 * 1024, 400).await;
}
