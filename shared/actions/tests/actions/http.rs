//! `http.request` against a real server on 127.0.0.1, one per test, on a random port.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use eventflow_actions::http::HttpRequest;
use eventflow_ports::{Action, ActionError};
use serde_json::{Value, json};

use crate::support::{World, action, assert_invalid};

async fn echo(method: Method, headers: HeaderMap, body: String) -> Json<Value> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Json(json!({
        "method": method.as_str(),
        "idempotency_key": header("idempotency-key"),
        "content_type": header("content-type"),
        "x_api_key": header("x-api-key"),
        "body": body,
    }))
}

async fn server() -> SocketAddr {
    let app = Router::new()
        .route(
            "/events/{id}",
            get(|| async {
                (
                    [(header::ETAG, "\"v7\""), (header::SERVER, "test")],
                    Json(json!({"id": "booking-17", "replied": false})),
                )
            }),
        )
        .route("/echo", any(echo))
        .route(
            "/text",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "hello") }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such event") }),
        )
        .route(
            "/unavailable",
            any(|| async { (StatusCode::SERVICE_UNAVAILABLE, "try later") }),
        )
        .route(
            "/busy",
            get(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "30")],
                    "slow down",
                )
                    .into_response()
            }),
        )
        .route(
            "/never",
            get(|| async {
                // Answers nothing, ever: the client's timeout has to end it.
                std::future::pending::<()>().await;
                "unreachable"
            }),
        )
        .route(
            "/large",
            get(|| async { "x".repeat(eventflow_actions::http::MAX_BODY_BYTES + 10) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on 127.0.0.1");
    let addr = listener.local_addr().expect("the bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn request(input: Value) -> Result<Value, ActionError> {
    let world = World::new();
    HttpRequest::new(reqwest::Client::new())
        .execute(&world.attempt("call", None, 2), &input)
        .await
}

#[tokio::test]
async fn a_json_answer_comes_back_parsed_with_selected_headers() {
    let addr = server().await;
    let out = request(json!({"url": format!("http://{addr}/events/berlin-2026")}))
        .await
        .expect("200");
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], json!({"id": "booking-17", "replied": false}));
    assert_eq!(out["headers"]["etag"], "\"v7\"");
    assert_eq!(out["headers"]["content-type"], "application/json");
    assert!(
        out["headers"].get("server").is_none(),
        "only selected headers"
    );
}

#[tokio::test]
async fn a_text_answer_comes_back_as_text() {
    let addr = server().await;
    let out = request(json!({"url": format!("http://{addr}/text")}))
        .await
        .expect("200");
    assert_eq!(out["body"], "hello");
}

#[tokio::test]
async fn a_body_is_sent_as_json_with_an_idempotency_key_that_survives_retries() {
    let addr = server().await;
    let out = request(json!({
        "method": "put",
        "url": format!("http://{addr}/echo"),
        "headers": {"x-api-key": 42},
        "body": {"title": "Rust Nation", "published": true},
        "timeout": "5s"
    }))
    .await
    .expect("200");
    let echoed = &out["body"];
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["content_type"], "application/json");
    assert_eq!(echoed["x_api_key"], "42");
    // the attempt was the second: the key leaves the attempt out
    assert_eq!(echoed["idempotency_key"], "exec-1/call/-");
    let sent: Value = serde_json::from_str(echoed["body"].as_str().expect("the raw body"))
        .expect("the body was JSON");
    assert_eq!(sent, json!({"title": "Rust Nation", "published": true}));
}

#[tokio::test]
async fn a_get_carries_no_idempotency_key_and_a_given_one_is_kept() {
    let addr = server().await;
    let out = request(json!({"url": format!("http://{addr}/echo")}))
        .await
        .expect("200");
    assert_eq!(out["body"]["idempotency_key"], Value::Null);
    let out = request(json!({
        "method": "POST",
        "url": format!("http://{addr}/echo"),
        "headers": {"Idempotency-Key": "mine"}
    }))
    .await
    .expect("200");
    assert_eq!(out["body"]["idempotency_key"], "mine");
}

#[tokio::test]
async fn not_found_is_terminal_and_says_what_answered() {
    let addr = server().await;
    let err = request(json!({"url": format!("http://{addr}/missing?token=secret")}))
        .await
        .expect_err("404");
    assert_eq!(err.name, "Http404");
    assert!(!err.retryable);
    assert!(err.message.contains("404 Not Found"), "{}", err.message);
    assert!(err.message.contains("no such event"), "{}", err.message);
    assert!(
        !err.message.contains("secret"),
        "the query is left out: {}",
        err.message
    );
}

#[tokio::test]
async fn unavailable_is_retryable() {
    let addr = server().await;
    let err = request(json!({"method": "DELETE", "url": format!("http://{addr}/unavailable")}))
        .await
        .expect_err("503");
    assert_eq!(err.name, "Http503");
    assert!(err.retryable);
}

#[tokio::test]
async fn too_many_requests_is_retryable() {
    let addr = server().await;
    let err = request(json!({"url": format!("http://{addr}/busy")}))
        .await
        .expect_err("429");
    assert_eq!(err.name, "Http429");
    assert!(err.retryable);
}

#[tokio::test]
async fn no_answer_in_time_is_a_retryable_timeout() {
    let addr = server().await;
    let err = request(json!({"url": format!("http://{addr}/never"), "timeout": 150}))
        .await
        .expect_err("timeout");
    assert_eq!(err.name, "Timeout");
    assert!(err.retryable);
    assert!(err.message.contains("150ms"), "{}", err.message);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    // A port that was free a moment ago and has nobody listening now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let err = request(json!({"url": format!("http://{addr}/events")}))
        .await
        .expect_err("refused");
    assert_eq!(err.name, "ConnectionFailed");
    assert!(err.retryable);
}

#[tokio::test]
async fn a_large_answer_is_cut_and_flagged() {
    let addr = server().await;
    let out = request(json!({"url": format!("http://{addr}/large")}))
        .await
        .expect("200");
    assert_eq!(out["truncated"], true);
    assert_eq!(
        out["body"].as_str().map(str::len),
        Some(eventflow_actions::http::MAX_BODY_BYTES)
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field() {
    for (input, path) in [
        (json!("http://127.0.0.1/"), "$"),
        (json!({}), "$.url"),
        (json!({"url": "not a url"}), "$.url"),
        (json!({"url": "ftp://example.org/file"}), "$.url"),
        (
            json!({"url": "http://127.0.0.1/", "method": "FETCH"}),
            "$.method",
        ),
        (
            json!({"url": "http://127.0.0.1/", "timeout": "soon"}),
            "$.timeout",
        ),
        (
            json!({"url": "http://127.0.0.1/", "timeout": 0}),
            "$.timeout",
        ),
        (
            json!({"url": "http://127.0.0.1/", "timeout": "1h"}),
            "$.timeout",
        ),
        (
            json!({"url": "http://127.0.0.1/", "headers": ["a"]}),
            "$.headers",
        ),
        (
            json!({"url": "http://127.0.0.1/", "headers": {"bad header": "x"}}),
            "$.headers.bad header",
        ),
        (
            json!({"url": "http://127.0.0.1/", "headers": {"x-a": "one\ntwo"}}),
            "$.headers.x-a",
        ),
        (
            json!({"url": "http://127.0.0.1/", "timout": "5s"}),
            "$.timout",
        ),
    ] {
        assert_invalid(request(input).await, path);
    }
}

#[tokio::test]
async fn it_cannot_undo_itself() {
    let world = World::new();
    let err = action("http.request")
        .compensate(&world.compensation("call", None, 1), &json!({}), None)
        .await
        .expect_err("no builtin compensation");
    assert_eq!(err.name, "NoCompensation");
}
