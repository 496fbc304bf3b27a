//! Tests of the filter language: every operator on every JSON kind, selectors through maps
//! and lists, precedence, every error message, and the examples of Consul's Filtering page.

use serde::Serialize;
use serde_json::{json, Value};

use super::{Filter, FilterError};

fn health_entry() -> Value {
    json!({
        "Node": {"Node": "node-1", "Address": "10.0.0.1", "Meta": {"os": "linux", "rack": "r1"}},
        "Service": {
            "ID": "web-1",
            "Service": "web",
            "Tags": ["primary", "v1"],
            "Meta": {"env": "prod", "version": "2", "dash-key": "yes"},
            "Port": 8080,
            "Address": "",
            "EnableTagOverride": false,
            "Weights": {"Passing": 1, "Warning": 1},
            "Ratio": 0.5,
            "Empty": {},
            "NoTags": [],
            "Proxy": null
        },
        "Checks": [
            {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
            {"CheckID": "service:web-1", "Status": "critical", "ServiceTags": ["primary", "v1"]}
        ]
    })
}

fn eval(expr: &str) -> bool {
    let f = Filter::parse(expr).unwrap_or_else(|e| panic!("parse {expr:?}: {e}"));
    f.matches(&health_entry())
        .unwrap_or_else(|e| panic!("evaluate {expr:?}: {e}"))
}

fn parse_err(expr: &str) -> String {
    match Filter::parse(expr) {
        Ok(f) => panic!("{expr:?} parsed: {f:?}"),
        Err(e) => e.to_string(),
    }
}

fn eval_err(expr: &str) -> FilterError {
    let f = Filter::parse(expr).unwrap_or_else(|e| panic!("parse {expr:?}: {e}"));
    match f.matches(&health_entry()) {
        Ok(b) => panic!("{expr:?} evaluated to {b}"),
        Err(e) => e,
    }
}

#[test]
fn strings() {
    assert!(eval("Service.Service == web"));
    assert!(eval("Service.Service == \"web\""));
    assert!(eval("Service.Service == `web`"));
    assert!(!eval("Service.Service == api"));
    assert!(eval("Service.Service != api"));
    assert!(!eval("Service.Service != web"));
    assert!(eval("Service.ID contains \"eb-\""));
    assert!(eval("\"eb-\" in Service.ID"));
    assert!(!eval("\"xyz\" in Service.ID"));
    assert!(eval("\"xyz\" not in Service.ID"));
    assert!(eval("Service.ID not contains xyz"));
    assert!(eval("Service.ID matches \"^web-[0-9]+$\""));
    assert!(!eval("Service.ID matches \"^api\""));
    assert!(eval("Service.ID not matches \"^api\""));
    assert!(eval("Service.Address is empty"));
    assert!(!eval("Service.Address is not empty"));
    assert!(eval("Service.ID is not empty"));
    assert!(eval("Service.Address == \"\""));
}

#[test]
fn numbers_and_bools() {
    assert!(eval("Service.Port == 8080"));
    assert!(eval("Service.Port == \"8080\""));
    assert!(eval("Service.Port != 80"));
    assert!(!eval("Service.Port != 8080"));
    // Go's ParseInt(s, 0, 64) spellings, quoted (unquoted `0x1f90` is not a number literal)
    assert!(eval("Service.Port == \"0x1f90\""));
    assert!(eval("Service.Ratio == 0.5"));
    assert!(eval("Service.Ratio != 1"));
    assert!(eval("Service.Weights.Passing == 1"));
    assert!(eval("Service.EnableTagOverride == false"));
    assert!(eval("Service.EnableTagOverride != true"));
    assert!(eval("Service.EnableTagOverride == F"));
    assert!(!eval("Service.EnableTagOverride == true"));
}

#[test]
fn lists() {
    assert!(eval("Service.Tags contains primary"));
    assert!(eval("primary in Service.Tags"));
    assert!(eval("\"v1\" in Service.Tags"));
    assert!(!eval("\"v2\" in Service.Tags"));
    assert!(eval("\"v2\" not in Service.Tags"));
    assert!(eval("Service.Tags not contains v2"));
    // membership, not substring
    assert!(!eval("Service.Tags contains prim"));
    assert!(eval("Service.Tags is not empty"));
    assert!(eval("Service.NoTags is empty"));
    assert!(!eval("Service.NoTags contains x"));
    let nums = Filter::parse("80 in Ports and true in Flags").unwrap();
    assert!(nums
        .matches(&json!({"Ports": [80, 443], "Flags": [true]}))
        .unwrap());
    assert!(!nums
        .matches(&json!({"Ports": [8080, "x"], "Flags": [true]}))
        .unwrap());
}

#[test]
fn maps() {
    assert!(eval("Service.Meta contains env"));
    assert!(eval("env in Service.Meta"));
    assert!(!eval("region in Service.Meta"));
    assert!(eval("region not in Service.Meta"));
    assert!(eval("Service.Meta is not empty"));
    assert!(eval("Service.Empty is empty"));
    assert!(eval("Service.Meta.env == prod"));
    assert!(eval("Service.Meta[\"env\"] == prod"));
    assert!(eval("Service.Meta[\"dash-key\"] == yes"));
    assert!(eval("Service.Meta[ \"dash-key\" ] == yes"));
    assert!(eval("Node.Meta.os == linux and Node.Meta.rack == r1"));
    assert!(eval("\"/Service/Meta/env\" == prod"));
    assert!(eval("\"/Service/Meta/dash-key\" == yes"));
}

#[test]
fn absent_map_keys_and_nulls() {
    // bexpr: a missing key is unequal, not contained, empty, and matches nothing.
    assert!(!eval("Service.Meta.region == eu"));
    assert!(eval("Service.Meta.region != eu"));
    assert!(eval("Service.Meta.region is empty"));
    assert!(!eval("Service.Meta.region is not empty"));
    assert!(!eval("Service.Meta.region contains e"));
    assert!(eval("Service.Meta.region not contains e"));
    assert!(!eval("Service.Meta.region matches \".*\""));
    assert!(eval("Service.Meta.region not matches \".*\""));
    assert!(eval("Service.Proxy is empty"));
    assert!(!eval("Service.Proxy.Mode == direct"));
    assert!(eval("Service.Proxy.Mode != direct"));
}

#[test]
fn lists_of_objects_any_match() {
    assert!(eval("Checks.Status == critical"));
    assert!(eval("Checks.Status == passing"));
    assert!(!eval("Checks.Status == warning"));
    // each element is tested with the whole operator, then any-combined
    assert!(eval("Checks.Status != passing"));
    assert!(!eval("not Checks.Status == critical"));
    assert!(eval("Checks.CheckID matches \"^service:\""));
    assert!(eval("Checks.ServiceTags contains v1"));
    assert!(eval("Checks.ServiceTags is empty"));
    assert!(eval("Checks.0.Status == passing"));
    assert!(eval("Checks.1.Status == critical"));
    assert!(!eval("Checks.5.Status == critical"));
    assert!(eval("Checks is not empty"));
    // an empty list matches nothing, even with a negated operator
    let f = Filter::parse("Checks.Status != passing").unwrap();
    assert!(!f.matches(&json!({"Checks": []})).unwrap());
}

#[test]
fn precedence_and_parentheses() {
    // not > and > or
    assert!(eval(
        "Service.Port == 1 and Service.Port == 2 or Service.Service == web"
    ));
    assert!(!eval(
        "Service.Port == 1 and (Service.Port == 2 or Service.Service == web)"
    ));
    assert!(eval(
        "Service.Service == web or Service.Port == 1 and Service.Port == 2"
    ));
    assert!(eval("not Service.Service == api and Service.Port == 8080"));
    assert!(!eval(
        "not (Service.Service == web and Service.Port == 8080)"
    ));
    assert!(eval("not not Service.Service == web"));
    assert!(eval("(Service.Service == web)"));
    assert!(eval(
        "((Service.Service == web) and (((Service.Port == 8080))))"
    ));
    assert!(eval(" Service.Service==web\tand\nService.Port==8080 "));
    // the docs' example of equivalent forms
    for (a, b, c) in [
        (true, true, false),
        (true, false, true),
        (false, true, true),
        (false, false, false),
    ] {
        let item = json!({"A": a, "B": b, "C": c});
        let f1 = Filter::parse("A == true and not B == true or C == true").unwrap();
        let f2 = Filter::parse("( A == true and (not B == true )) or C == true").unwrap();
        assert_eq!(f1.matches(&item).unwrap(), f2.matches(&item).unwrap());
        assert_eq!(f1.matches(&item).unwrap(), (a && !b) || c);
    }
}

#[test]
fn values_and_escapes() {
    let f = Filter::parse(r#"Name == "a\"b\tc\u00e9" or Name == `raw\n` or Name == host.example"#)
        .unwrap();
    assert!(f.matches(&json!({"Name": "a\"b\tcé"})).unwrap());
    assert!(f.matches(&json!({"Name": "raw\\n"})).unwrap());
    assert!(f.matches(&json!({"Name": "host.example"})).unwrap());
    assert!(!f.matches(&json!({"Name": "raw\n"})).unwrap());
    let neg = Filter::parse("Offset == -5").unwrap();
    assert!(neg.matches(&json!({"Offset": -5})).unwrap());
}

#[test]
fn apply_keeps_matching_items_in_order() {
    #[derive(Serialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Svc {
        #[serde(rename = "ID")]
        id: String,
        port: u16,
        tags: Vec<String>,
    }
    let items: Vec<Svc> = (0..10_000)
        .map(|i| Svc {
            id: format!("svc-{i}"),
            port: 8000 + (i % 10) as u16,
            tags: if i % 2 == 0 {
                vec!["even".into()]
            } else {
                vec![]
            },
        })
        .collect();
    let f =
        Filter::parse("Port == 8004 and even in Tags and ID matches \"^svc-[0-9]*4$\"").unwrap();
    let kept = f.apply(items).unwrap();
    assert_eq!(kept.len(), 1000);
    assert_eq!(kept[0].id, "svc-4");
    assert_eq!(kept[1].id, "svc-14");
    let none = Filter::parse("Port == 1")
        .unwrap()
        .apply(Vec::<Svc>::new())
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn apply_fails_on_an_item_that_cannot_be_evaluated() {
    let f = Filter::parse("Port contains 8").unwrap();
    let err = f.apply(vec![json!({"Port": 80})]).unwrap_err();
    assert!(err.is_bad_request());
}

#[test]
fn syntax_errors_name_the_problem_and_position() {
    let cases = [
        (
            "Service ==",
            "syntax error at position 11: expected a value after \"==\", found end of input",
        ),
        ("", "syntax error at position 1: empty expression"),
        (
            "(Service == web",
            "syntax error at position 16: unbalanced parentheses: expected \")\" to close the \"(\" at position 1, found end of input",
        ),
        (
            "Service == web)",
            "syntax error at position 15: unbalanced parentheses: \")\" without a matching \"(\"",
        ),
        ("()", "syntax error at position 2: unbalanced parentheses: expected an expression before \")\""),
        (
            "Service = web",
            "syntax error at position 9: unknown operator \"=\" (did you mean \"==\"?)",
        ),
        (
            "Service startswith web",
            "syntax error at position 9: unknown operator \"startswith\" after the selector \"Service\"",
        ),
        ("Service", "syntax error at position 8: expected an operator after the selector \"Service\", found end of input"),
        ("Service is full", "syntax error at position 12: expected \"empty\" after \"is\", found \"full\""),
        (
            "Service == web and",
            "syntax error at position 19: expected a selector or a value, found end of input",
        ),
        (
            "Service == web web",
            "syntax error at position 16: expected \"and\", \"or\" or the end of the expression, found \"web\"",
        ),
        ("Service == \"web", "syntax error at position 12: unterminated string literal"),
        ("Service == `web", "syntax error at position 12: unterminated string literal"),
        ("Port == 80x", "syntax error at position 9: invalid number literal \"80x\""),
        ("Port == 007", "syntax error at position 9: invalid number literal \"007\""),
        ("\"web\" == Service", "syntax error at position 7: expected \"in\" or \"not in\" after the value \"web\""),
        ("web in 42", "syntax error at position 8: expected a selector after \"in\", found number 42"),
        ("Meta[env] == x", "syntax error at position 6: invalid index: expected a quoted map key"),
        ("Meta[\"env\" == x", "syntax error at position 12: unclosed index expression: expected \"]\""),
        ("Meta. env == x", "syntax error at position 7: expected a field name right after \".\""),
        ("Meta.dash-key == x", "syntax error at position 10: unexpected character '-' (quote map keys"),
        ("Service == my-web", "syntax error at position 14: unexpected character '-' (quote"),
        ("Service == web & Port == 1", "syntax error at position 16: unexpected character '&'"),
        ("Name == \"a\\qb\"", "syntax error at position 11: invalid escape sequence \"\\q\""),
    ];
    for (expr, want) in cases {
        let got = parse_err(expr);
        assert!(
            got.starts_with("Failed to create boolean expression evaluator: "),
            "{expr:?}: {got}"
        );
        assert!(got.contains(want), "{expr:?}:\n got: {got}\nwant: {want}");
    }
}

#[test]
fn bad_regex_is_a_parse_error() {
    let err = Filter::parse("Service.ID matches \"(unclosed\"").unwrap_err();
    assert!(
        matches!(err, FilterError::Regex { position: 20, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "Failed to create boolean expression evaluator: Failed to compile regular expression \"(unclosed\" at position 20: "
        ),
        "{msg}"
    );
    assert!(msg.contains("unclosed group"), "{msg}");
    assert!(err.is_bad_request());
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}A == 1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(parse_err(&deep).contains("nested more than 128 levels deep"));
    let nots = format!("{}A == 1", "not ".repeat(100_000));
    assert!(parse_err(&nots).contains("nested more than 128 levels deep"));
    // long flat chains are fine
    let long = vec!["A == 1"; 10_000].join(" or ");
    let f = Filter::parse(&long).unwrap();
    assert!(f.matches(&json!({"A": 1})).unwrap());
}

#[test]
fn unknown_selector_is_an_error_even_when_short_circuited() {
    let err = eval_err("Service.Service == web or Foo.Bar == x");
    assert_eq!(
        err,
        FilterError::UnknownSelector {
            selector: "Foo.Bar".into(),
            field: "Foo".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "Failed to create boolean expression evaluator: Selector \"Foo.Bar\" is not valid: no field \"Foo\""
    );
    assert!(matches!(
        eval_err("x in Tags"),
        FilterError::UnknownSelector { .. }
    ));
}

#[test]
fn type_errors() {
    assert_eq!(
        eval_err("Service.Port == web").to_string(),
        "Failed to create boolean expression evaluator: Failed to coerce value \"web\" for selector \"Service.Port\": expected an integer"
    );
    assert_eq!(
        eval_err("Service.Port == 1.5").to_string(),
        "Failed to create boolean expression evaluator: Failed to coerce value \"1.5\" for selector \"Service.Port\": expected an integer"
    );
    assert_eq!(
        eval_err("Service.EnableTagOverride == yes").to_string(),
        "Failed to create boolean expression evaluator: Failed to coerce value \"yes\" for selector \"Service.EnableTagOverride\": expected true or false"
    );
    assert_eq!(
        eval_err("Service.Tags == primary").to_string(),
        "Failed to create boolean expression evaluator: Invalid match operator \"==\" for selector \"Service.Tags\": it selects a list"
    );
    assert_eq!(
        eval_err("Service.Meta != x").to_string(),
        "Failed to create boolean expression evaluator: Invalid match operator \"!=\" for selector \"Service.Meta\": it selects a map"
    );
    assert_eq!(
        eval_err("Service.Port contains 8").to_string(),
        "Failed to create boolean expression evaluator: Invalid match operator \"contains\" for selector \"Service.Port\": it selects a number"
    );
    assert_eq!(
        eval_err("Service.Port is empty").to_string(),
        "Failed to create boolean expression evaluator: Invalid match operator \"is empty\" for selector \"Service.Port\": it selects a number"
    );
    assert_eq!(
        eval_err("Service.Tags matches \"p\"").to_string(),
        "Failed to create boolean expression evaluator: Invalid match operator \"matches\" for selector \"Service.Tags\": it selects a list"
    );
    assert_eq!(
        eval_err("Service.Service.Name == x").to_string(),
        "Failed to create boolean expression evaluator: Value at selector \"Service.Service\" is a string and has no field \"Name\""
    );
}

// ---- Examples from Consul's API docs, "Filtering" page (features/filtering) ----

#[test]
fn docs_agent_services_meta_env_qa() {
    let services = json!({
        "redis1": {"ID": "redis1", "Service": "redis", "Tags": ["primary", "production"],
                   "Meta": {"env": "production", "foo": "bar"}, "Port": 1234, "Address": "",
                   "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false},
        "redis2": {"ID": "redis2", "Service": "redis", "Tags": ["secondary", "production"],
                   "Meta": {"env": "production", "foo": "bar"}, "Port": 1235, "Address": "",
                   "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false},
        "redis3": {"ID": "redis3", "Service": "redis", "Tags": ["primary", "qa"],
                   "Meta": {"env": "qa"}, "Port": 1234, "Address": "",
                   "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false}
    });
    let filter = Filter::parse("Meta.env == \"qa\"").unwrap();
    let items: Vec<Value> = services.as_object().unwrap().values().cloned().collect();
    let kept = filter.apply(items).unwrap();
    let ids: Vec<&str> = kept.iter().map(|s| s["ID"].as_str().unwrap()).collect();
    assert_eq!(ids, ["redis3"]);
    // the same on the map itself, as the endpoint returns it
    let map: std::collections::BTreeMap<String, Value> = serde_json::from_value(services).unwrap();
    let kept = filter.apply_values(map).unwrap();
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["redis3"]);
}

#[test]
fn docs_catalog_service_node_meta_os_linux() {
    let nodes = json!([
        {"ID": "b4f64e8c-5c7d-11e9-bf68-8c8590bd0966", "Node": "node-1", "Address": "198.18.0.1",
         "Datacenter": "dc1", "TaggedAddresses": null,
         "NodeMeta": {"agent": "true", "arch": "i386", "os": "darwin"},
         "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
         "ServiceTags": ["tag"], "ServiceAddress": "", "ServiceWeights": {"Passing": 1, "Warning": 1},
         "ServiceMeta": {"environment": "qa"}, "ServicePort": 9090, "ServiceEnableTagOverride": false,
         "ServiceProxy": {}, "ServiceConnect": {}, "CreateIndex": 30, "ModifyIndex": 30},
        {"ID": "b4faf93a-5c7d-11e9-840d-8c8590bd0966", "Node": "node-2", "Address": "198.18.0.2",
         "Datacenter": "dc1", "TaggedAddresses": null, "NodeMeta": {"arch": "arm", "os": "linux"},
         "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
         "ServiceTags": ["test", "tag"], "ServiceAddress": "", "ServiceWeights": {"Passing": 1, "Warning": 1},
         "ServiceMeta": {"environment": "production"}, "ServicePort": 9090,
         "ServiceEnableTagOverride": false, "ServiceProxy": {}, "ServiceConnect": {},
         "CreateIndex": 29, "ModifyIndex": 29},
        {"ID": "b4fbe7f4-5c7d-11e9-ac82-8c8590bd0966", "Node": "node-4", "Address": "198.18.0.4",
         "Datacenter": "dc1", "TaggedAddresses": null, "NodeMeta": {"arch": "i386", "os": "freebsd"},
         "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
         "ServiceTags": [], "ServiceAddress": "", "ServiceWeights": {"Passing": 1, "Warning": 1},
         "ServiceMeta": {"environment": "qa"}, "ServicePort": 9090, "ServiceEnableTagOverride": false,
         "ServiceProxy": {}, "ServiceConnect": {}, "CreateIndex": 28, "ModifyIndex": 28}
    ]);
    let items = nodes.as_array().unwrap().clone();
    let kept = Filter::parse("NodeMeta.os == \"linux\"")
        .unwrap()
        .apply(items.clone())
        .unwrap();
    let names: Vec<&str> = kept.iter().map(|s| s["Node"].as_str().unwrap()).collect();
    assert_eq!(names, ["node-2"]);
    // The Selectors section: `ServiceMeta.foo` and `ServiceMeta["foo"]` select the same key.
    let a = Filter::parse("ServiceMeta.environment == qa")
        .unwrap()
        .apply(items.clone())
        .unwrap();
    let b = Filter::parse("ServiceMeta[\"environment\"] == qa")
        .unwrap()
        .apply(items.clone())
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 2);
    // null TaggedAddresses is empty, and tag membership works on ServiceTags.
    assert_eq!(
        Filter::parse("TaggedAddresses is empty")
            .unwrap()
            .apply(items.clone())
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        Filter::parse("tag in ServiceTags")
            .unwrap()
            .apply(items)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn docs_health_node_service_name_not_empty() {
    let checks = json!([
        {"Node": "node-1", "CheckID": "node-health", "Name": "Node level check", "Status": "critical",
         "Notes": "", "Output": "", "ServiceID": "", "ServiceName": "", "ServiceTags": [],
         "Definition": {}, "CreateIndex": 13, "ModifyIndex": 13},
        {"Node": "node-1", "CheckID": "svc-web-health", "Name": "Service level check - web",
         "Status": "warning", "Notes": "", "Output": "", "ServiceID": "", "ServiceName": "web",
         "ServiceTags": [], "Definition": {}, "CreateIndex": 18, "ModifyIndex": 18}
    ]);
    let kept = Filter::parse("ServiceName != \"\"")
        .unwrap()
        .apply(checks.as_array().unwrap().clone())
        .unwrap();
    let ids: Vec<&str> = kept
        .iter()
        .map(|s| s["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["svc-web-health"]);
}
