//! Keeps `server/src/api/openapi.json` true: it is OpenAPI 3.0, it documents exactly the routes
//! and methods registered in `src/api/*.rs` and `src/runtime/http.rs` (read from the source,
//! so neither side can drift), and a running server serves it and answers its GET paths.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod http_client;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use http_client::{Request, Sse};
use serde_json::Value;
use steward::config::Config;
use steward::runtime;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn spec() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("openapi.json parses")
}

/// The files whose `.route(` calls make the HTTP API.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> = std::fs::read_dir(root.join("api"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.push(root.join("runtime/http.rs"));
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            // Comment lines never register routes (and doc comments quote them).
            let code: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            (p.display().to_string(), code.join("\n"))
        })
        .collect()
}

/// The index just past the `)` matching the `(` that ends at `open` (exclusive start).
fn matching_paren(text: &str, open: usize) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut i, mut in_str) = (1usize, open, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'(' if !in_str => depth += 1,
            b')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced parentheses after byte {open}");
}

/// The first string literal at or after `from`: (contents, index past the closing quote).
fn string_literal(text: &str, from: usize) -> (String, usize) {
    let start = from + text[from..].find('"').unwrap() + 1;
    let end = start + text[start..].find('"').unwrap();
    (text[start..end].to_owned(), end + 1)
}

/// The methods named in a method-router expression such as `get(a).post(b)`.
fn methods_in(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for method in METHODS.iter().chain(&["any"]) {
        let needle = format!("{method}(");
        let mut from = 0;
        while let Some(at) = expr[from..].find(&needle) {
            let at = from + at;
            let before = expr[..at].chars().next_back();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                found.insert((*method).to_owned());
            }
            from = at + needle.len();
        }
    }
    assert!(
        !found.contains("any"),
        "an `any(..)` route: document its methods and teach this test which ones ({expr})"
    );
    found
}

/// The name of the last `fn NAME(` before `at`.
fn enclosing_fn(text: &str, at: usize) -> String {
    let start = text[..at].rfind("fn ").unwrap() + 3;
    let end = start + text[start..].find('(').unwrap();
    text[start..end].trim().to_owned()
}

/// The string arguments of every call `NAME("...")` in the sources.
fn call_arguments(sources: &[(String, String)], name: &str) -> Vec<String> {
    let needle = format!("{name}(\"");
    let mut args = Vec::new();
    for (_, text) in sources {
        let mut from = 0;
        while let Some(at) = text[from..].find(&needle) {
            let at = from + at;
            let (arg, _) = string_literal(text, at);
            args.push(arg);
            from = at + needle.len();
        }
    }
    args
}

/// `format!` text with its single placeholder replaced and `{{ }}` unescaped.
fn expand_format(template: &str, value: &str) -> String {
    let escaped = template.replace("{{", "\u{1}").replace("}}", "\u{2}");
    let open = escaped
        .find('{')
        .expect("a format! route has a placeholder");
    let close = open + escaped[open..].find('}').unwrap();
    let filled = format!("{}{value}{}", &escaped[..open], &escaped[close + 1..]);
    assert!(!filled.contains('{'), "one placeholder per format! route");
    filled.replace('\u{1}', "{").replace('\u{2}', "}")
}

/// axum's `{param}` and `{*param}` as OpenAPI's `{param}`.
fn to_openapi(path: &str) -> String {
    path.replace("{*", "{")
}

/// Every route registered in the sources, as OpenAPI path → methods.
fn registered_routes() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &sources {
        let mut from = 0;
        while let Some(at) = text[from..].find(".route(") {
            let open = from + at + ".route(".len();
            let close = matching_paren(text, open);
            let call = &text[open..close - 1];
            let (literal, after) = string_literal(call, 0);
            let head = call[..after].trim_start();
            let paths = if head.starts_with('"') {
                vec![literal]
            } else if head.starts_with("&format!(") {
                // A route built from a prefix parameter: one path per call site.
                let function = enclosing_fn(text, open);
                let args = call_arguments(&sources, &function);
                assert!(!args.is_empty(), "{file}: no call of {function}(\"...\")");
                args.iter().map(|a| expand_format(&literal, a)).collect()
            } else {
                panic!("{file}: a route path this test cannot read: {head}");
            };
            let methods = methods_in(&call[after..]);
            assert!(!methods.is_empty(), "{file}: no method in {call}");
            for path in paths {
                let entry = routes.entry(to_openapi(&path)).or_default();
                assert!(entry.is_empty(), "{path} registered twice");
                entry.extend(methods.iter().cloned());
            }
            from = close;
        }
    }
    routes
}

fn documented_routes(spec: &Value) -> BTreeMap<String, BTreeSet<String>> {
    spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[test]
fn the_document_is_openapi_3_0() {
    let spec = spec();
    let version = spec["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.0."), "{version}");
    assert!(spec["info"]["title"].is_string());
    assert!(!spec["paths"].as_object().unwrap().is_empty());
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Every operation says what it answers, and every path parameter is declared.
    for (path, item) in spec["paths"].as_object().unwrap() {
        let shared = item.get("parameters").and_then(Value::as_array);
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}: no responses"
            );
            let declared: Vec<String> = shared
                .into_iter()
                .flatten()
                .chain(
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                )
                .map(|p| resolve(&spec, p))
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    assert!(
                        declared.iter().any(|d| d == name),
                        "{method} {path}: path parameter {name} not declared"
                    );
                }
            }
        }
    }
    // Every `$ref` resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec, &mut all);
    for r in all {
        let pointer = r.strip_prefix('#').unwrap();
        assert!(spec.pointer(pointer).is_some(), "unresolved {r}");
    }
}

/// A parameter, following a `$ref`.
fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => spec.pointer(r.strip_prefix('#').unwrap()).unwrap(),
        None => v,
    }
}

#[test]
fn every_registered_route_is_documented_and_nothing_else() {
    let registered = registered_routes();
    let documented = documented_routes(&spec());
    // The parser itself: a few routes it must find, with their methods.
    assert_eq!(
        registered["/api/clients/{ep}/{rest}"],
        ["delete", "get", "post", "put"].map(String::from).into()
    );
    assert!(registered.contains_key("/bs/api/security/clients/{ep}"));
    assert!(registered.contains_key("/api/security/clients/"));
    assert!(registered.contains_key("/ocsp/{request}"));
    assert!(registered.contains_key("/api/openapi.json"));

    let missing: Vec<_> = registered
        .keys()
        .filter(|p| !documented.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "routes not in openapi.json: {missing:?}"
    );
    let extra: Vec<_> = documented
        .keys()
        .filter(|p| !registered.contains_key(*p))
        .collect();
    assert!(
        extra.is_empty(),
        "openapi.json paths not registered: {extra:?}"
    );
    for (path, methods) in &registered {
        assert_eq!(&documented[path], methods, "methods of {path}");
    }
}

/// One HTTP/1.1 request with `Connection: close`: (status, body). For an event stream, only
/// the head is read.
async fn get(addr: SocketAddr, path: &str, stream_only_head: bool) -> (u16, Vec<u8>) {
    if stream_only_head {
        let stream = Sse::connect(addr, path, None).await;
        return (stream.head.status, stream.text.into_bytes());
    }
    let reply = Request::get(path).header("Accept", "*/*").send(addr).await;
    (reply.status, reply.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_server_serves_the_document_and_its_get_paths() {
    // With a CA, so that the PKI routes answer rather than 404 `no CA`.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = std::sync::Arc::new(steward::store::SledStore::open(&data).unwrap());
        steward::pki::PkiService::init_if_missing(&data, store, Default::default()).unwrap();
    }
    let server = runtime::start(&Config::ephemeral(data)).await.unwrap();
    let addr = server.http_addr().unwrap();

    let spec = spec();
    let (status, body) = get(addr, "/api/openapi.json", false).await;
    assert_eq!(status, 200);
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, spec);

    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        if path.contains('{') {
            continue;
        }
        let is_stream = op["responses"]["200"]["content"]
            .get("text/event-stream")
            .is_some();
        let (status, body) = get(addr, path, is_stream).await;
        // Unrouted answers are 404/405 with an empty body; a documented 404 has a message.
        let documented = op["responses"]
            .as_object()
            .unwrap()
            .contains_key(&status.to_string());
        assert!(
            status != 405 && (status != 404 || (documented && !body.is_empty())),
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        assert!(documented, "GET {path}: {status} is not documented");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} GET paths checked");
    server.shutdown().await.unwrap();
}
