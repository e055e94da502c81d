//! `openapi.yaml` (at the repository root) describes exactly the routes the server has, and
//! every operation in it is complete enough to call: an `operationId` and the refusals it can
//! give. The document's own validity is checked by `openapi-spec-validator` in
//! `scripts/test.sh`; that validator does not follow a schema's `$ref`, so this test does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use eventflow_api::http::routes;
use eventflow_api::plane::ErrorKind;
use serde_json::Value;

/// The methods an OpenAPI path item can hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `GET /health` answers 200 and nothing else (any other method is refused with 405 like on
/// every path, which the document says once rather than per operation).
const NO_REFUSAL: &[(&str, &str)] = &[("GET", "/health")];

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("openapi.yaml does not parse: {e}"))
}

/// Every operation of the document: (METHOD, path) to the operation object.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let paths = doc["paths"].as_object().expect("openapi.yaml has `paths`");
    let mut ops = BTreeMap::new();
    for (path, item) in paths {
        let item = item
            .as_object()
            .unwrap_or_else(|| panic!("the path item {path} is not an object"));
        for (key, op) in item {
            if METHODS.contains(&key.as_str()) {
                ops.insert((key.to_uppercase(), path.clone()), op.clone());
            }
        }
    }
    ops
}

#[test]
fn the_document_has_exactly_the_routes_of_the_server() {
    let documented: BTreeSet<(String, String)> = operations(&document()).into_keys().collect();
    let served: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    let show = |set: BTreeSet<&(String, String)>| {
        if set.is_empty() {
            return "  (none)".to_owned();
        }
        set.iter()
            .map(|(m, p)| format!("  {m} {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let undocumented: BTreeSet<_> = served.difference(&documented).collect();
    let unserved: BTreeSet<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "openapi.yaml and eventflow_api::http::routes() differ.\n\
         Served but missing from openapi.yaml:\n{}\n\
         In openapi.yaml but not served:\n{}",
        show(undocumented),
        show(unserved),
    );
}

#[test]
fn every_operation_has_an_id_and_its_refusals() {
    let mut ids = BTreeMap::new();
    let mut problems = Vec::new();
    for ((method, path), op) in operations(&document()) {
        let at = format!("{method} {path}");
        match op["operationId"].as_str() {
            Some(id) if !id.is_empty() => {
                if let Some(other) = ids.insert(id.to_owned(), at.clone()) {
                    problems.push(format!("{at}: operationId `{id}` is also {other}'s"));
                }
            }
            _ => problems.push(format!("{at}: no operationId")),
        }
        let Some(responses) = op["responses"].as_object() else {
            problems.push(format!("{at}: no responses"));
            continue;
        };
        let refuses = responses.keys().any(|status| status.starts_with('4'));
        if !refuses && !NO_REFUSAL.contains(&(method.as_str(), path.as_str())) {
            problems.push(format!("{at}: no 4xx response"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every kind of refusal; the match makes a new kind fail to compile here until it is added.
fn error_kinds() -> Vec<ErrorKind> {
    let all = vec![
        ErrorKind::Invalid,
        ErrorKind::Unauthorized,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::Conflict,
        ErrorKind::TooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::Unavailable,
    ];
    for kind in &all {
        match kind {
            ErrorKind::Invalid
            | ErrorKind::Unauthorized
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::Conflict
            | ErrorKind::TooLarge
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::Unavailable => {}
        }
    }
    all
}

#[test]
fn the_error_codes_and_statuses_are_the_servers() {
    let doc = document();
    let kinds = error_kinds();
    let codes: BTreeSet<&str> = kinds.iter().map(|k| k.code()).collect();
    let documented: BTreeSet<&str> =
        doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("the Error schema lists its codes in `enum`")
            .iter()
            .map(|c| c.as_str().expect("a code is a string"))
            .collect();
    assert_eq!(documented, codes, "the Error schema's codes");

    let statuses: BTreeSet<String> = kinds.iter().map(|k| k.status().to_string()).collect();
    let mut strange = Vec::new();
    for ((method, path), op) in operations(&doc) {
        let responses = op["responses"].as_object().into_iter().flatten();
        for (status, _) in responses {
            if !status.starts_with('2') && !statuses.contains(status) {
                strange.push(format!("{method} {path}: {status}"));
            }
        }
    }
    assert!(
        strange.is_empty(),
        "the server never answers these; its refusals are {statuses:?}:\n{}",
        strange.join("\n")
    );
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_within_the_document() {
    let doc = document();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty(), "openapi.yaml has no $ref at all");
    let broken: Vec<&str> = all
        .into_iter()
        .filter(|r| match r.strip_prefix('#') {
            Some(pointer) => doc.pointer(pointer).is_none(),
            None => true,
        })
        .collect();
    assert!(
        broken.is_empty(),
        "these $refs do not resolve within openapi.yaml: {broken:?}"
    );
}
