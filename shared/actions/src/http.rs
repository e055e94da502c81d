//! `http.request`: calls an HTTP endpoint.
//!
//! Input `{method?, url, headers?, body?, timeout?}`: `method` one of GET (the default), HEAD,
//! POST, PUT, PATCH, DELETE, OPTIONS, in any case; `url` an absolute `http`/`https` URL;
//! `headers` an object of header names to text (numbers and booleans are written as text);
//! `body` any JSON, sent as JSON (`content-type: application/json` unless the headers say
//! otherwise; a string body with a non-JSON content type is sent as that text); `timeout`
//! `"10s"`-style or a number of milliseconds, default [`DEFAULT_TIMEOUT`], at most
//! [`MAX_TIMEOUT`], counted from connecting to the last byte of the answer.
//!
//! Output `{status, headers, body}`: `headers` only those in [`KEPT_HEADERS`], names in lower
//! case; `body` parsed JSON when the answer is JSON, else text, `null` when empty. Answers
//! longer than [`MAX_BODY_BYTES`] are cut, kept as text, and flagged `truncated: true`.
//!
//! Errors, by name (what retry policies' `non_retryable` match):
//! - `Timeout` (retryable): no complete answer within the timeout.
//! - `ConnectionFailed` (retryable): DNS, refused, reset, TLS, a broken answer.
//! - `Http<status>` for every answer of 400 or more, e.g. `Http404`, `Http429`, `Http503`:
//!   retryable for 408, 429 and 5xx, terminal for the other 4xx. One name per status, so a
//!   policy can stop retrying exactly the status it knows is permanent (`"Http501"`).
//! - `TooManyRedirects` (terminal), `InvalidInput` (terminal).
//!
//! Requests other than GET, HEAD and OPTIONS carry an `Idempotency-Key` header (unless the
//! input sets one): the attempt's key without its attempt number, the same for every retry of
//! the step, so an endpoint that honours the header applies the request once. There is no
//! builtin compensation: a definition names the request that reverses it (a DELETE).

use std::time::Duration;

use async_trait::async_trait;
use eventflow_ports::{Action, ActionContext, ActionError};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, StatusCode, Url};
use serde_json::{Map, Value, json};

use crate::input::{Fields, excerpt, invalid, kind, show, whole_number};

pub const NAME: &str = "http.request";
const FIELDS: &[&str] = &["method", "url", "headers", "body", "timeout"];

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a request may take: a Lambda function's own limit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The most of an answer kept in the output (which lands in the execution's checkpoint).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The answer headers kept in the output.
pub const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "location",
    "etag",
    "last-modified",
    "retry-after",
    "x-request-id",
];

/// The action, with the HTTP client the host built once at start.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    client: Client,
}

impl HttpRequest {
    pub fn new(client: Client) -> HttpRequest {
        HttpRequest { client }
    }
}

/// A checked request.
#[derive(Debug)]
struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Value>,
    timeout: Duration,
}

impl Request {
    fn parse(input: &Value) -> Result<Request, ActionError> {
        let f = Fields::new(NAME, input, FIELDS)?;
        let method = match f.opt_str("method", "an HTTP method such as \"POST\"")? {
            None => Method::GET,
            Some(m) => match m.to_ascii_uppercase().as_str() {
                "GET" => Method::GET,
                "HEAD" => Method::HEAD,
                "POST" => Method::POST,
                "PUT" => Method::PUT,
                "PATCH" => Method::PATCH,
                "DELETE" => Method::DELETE,
                "OPTIONS" => Method::OPTIONS,
                _ => {
                    return Err(invalid(
                        "$.method",
                        format!(
                            "`{}` is not a method; use GET, HEAD, POST, PUT, PATCH, DELETE or \
                             OPTIONS",
                            excerpt(m, 20)
                        ),
                    ));
                }
            },
        };
        let url = f.str(
            "url",
            "the absolute URL to call, such as \"https://api.example.org/events\"",
        )?;
        let url = Url::parse(url.trim()).map_err(|e| {
            invalid(
                "$.url",
                format!(
                    "`{}` is not an absolute URL ({e}); write it like \
                     \"https://api.example.org/events\"",
                    excerpt(url, 80)
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(invalid(
                "$.url",
                format!(
                    "`{}` is not an http or https URL with a host; write it like \
                     \"https://api.example.org/events\"",
                    redact(&url)
                ),
            ));
        }
        let headers = match f.opt("headers") {
            None => HeaderMap::new(),
            Some(Value::Object(h)) => headers(h)?,
            Some(other) => {
                return Err(invalid(
                    "$.headers",
                    format!(
                        "expected an object such as {{\"content-type\": \"application/json\"}}, \
                         got {}",
                        kind(other)
                    ),
                ));
            }
        };
        let timeout = match f.opt("timeout") {
            None => DEFAULT_TIMEOUT,
            Some(v) => timeout(v)?,
        };
        Ok(Request {
            method,
            url,
            headers,
            body: f.opt("body").cloned(),
            timeout,
        })
    }
}

fn headers(h: &Map<String, Value>) -> Result<HeaderMap, ActionError> {
    let mut map = HeaderMap::new();
    for (name, value) in h {
        let path = format!("$.headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            invalid(
                &path,
                "is not a header name; use letters, digits and `-`, such as \"x-api-key\"",
            )
        })?;
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            other => {
                return Err(invalid(
                    &path,
                    format!("a header's value is text, got {}", kind(other)),
                ));
            }
        };
        let value = HeaderValue::from_str(&text).map_err(|_| {
            invalid(
                &path,
                "a header's value is one line of visible characters; remove line breaks and \
                 control characters",
            )
        })?;
        map.append(header, value);
    }
    Ok(map)
}

fn timeout(v: &Value) -> Result<Duration, ActionError> {
    let parsed = match v {
        Value::String(s) => s
            .parse::<eventflow_engine::Duration>()
            .map(eventflow_engine::Duration::std)
            .map_err(|e| invalid("$.timeout", e))?,
        Value::Number(_) => whole_number(v).map(Duration::from_millis).ok_or_else(|| {
            invalid(
                "$.timeout",
                format!("{} is not a whole number of milliseconds", show(v)),
            )
        })?,
        other => {
            return Err(invalid(
                "$.timeout",
                format!(
                    "expected a duration such as \"10s\" or milliseconds, got {}",
                    kind(other)
                ),
            ));
        }
    };
    if parsed.is_zero() || parsed > MAX_TIMEOUT {
        return Err(invalid(
            "$.timeout",
            format!(
                "a timeout is more than 0 and at most {}s, such as \"10s\"",
                MAX_TIMEOUT.as_secs()
            ),
        ));
    }
    Ok(parsed)
}

/// The URL for messages and logs: no user info, no query (both may hold secrets).
fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

#[async_trait]
impl Action for HttpRequest {
    fn name(&self) -> &'static str {
        NAME
    }

    #[tracing::instrument(name = "http.request", skip_all, fields(key = %ctx.key))]
    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        let req = Request::parse(input)?;
        let what = format!("{} {}", req.method, redact(&req.url));
        let mut builder = self
            .client
            .request(req.method.clone(), req.url.clone())
            .timeout(req.timeout);
        let mut headers = req.headers;
        let safe = matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe
            && !headers.contains_key("idempotency-key")
            && let Ok(key) = HeaderValue::from_str(crate::run_key(ctx))
        {
            headers.insert("idempotency-key", key);
        }
        let is_json = |h: &HeaderMap| h.get(CONTENT_TYPE).is_none_or(json_type);
        builder = match req.body {
            None => builder.headers(headers),
            Some(Value::String(text)) if !is_json(&headers) => builder.headers(headers).body(text),
            Some(body) => builder.headers(headers).json(&body),
        };
        let mut response = builder
            .send()
            .await
            .map_err(|e| transport(e, &what, req.timeout))?;
        let status = response.status();
        let kept: Map<String, Value> = KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = response.headers().get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), Value::String(value.to_owned())))
            })
            .collect();
        let json_answer = response.headers().get(CONTENT_TYPE).map(json_type);
        let mut bytes = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport(e, &what, req.timeout))?
        {
            let room = MAX_BODY_BYTES - bytes.len();
            if chunk.len() > room {
                bytes.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = decode(&bytes, json_answer, truncated);
        tracing::info!(method = %req.method, url = %redact(&req.url), status = status.as_u16(), "answered");
        if status.as_u16() >= 400 {
            return Err(answer_error(status, &what, &body));
        }
        let mut result = json!({"status": status.as_u16(), "headers": kept, "body": body});
        if truncated {
            result["truncated"] = Value::Bool(true);
        }
        Ok(result)
    }
}

fn json_type(v: &HeaderValue) -> bool {
    v.to_str().is_ok_and(|t| {
        let essence = t
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence == "application/json" || essence.ends_with("+json")
    })
}

/// The answer's body: JSON when it says so (or says nothing and parses), else text.
fn decode(bytes: &[u8], json_answer: Option<bool>, truncated: bool) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    if !truncated
        && json_answer != Some(false)
        && let Ok(v) = serde_json::from_slice::<Value>(bytes)
    {
        return v;
    }
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// The error for an answer of 400 or more.
fn answer_error(status: StatusCode, what: &str, body: &Value) -> ActionError {
    let code = status.as_u16();
    let name = format!("Http{code}");
    let detail = match body {
        Value::Null => String::new(),
        Value::String(s) => format!(": {}", excerpt(s.trim(), 200)),
        other => format!(": {}", excerpt(&other.to_string(), 200)),
    };
    let message = format!("{what} answered {status}{detail}");
    if code == 408 || code == 429 || status.is_server_error() {
        ActionError::retryable(&name, message)
    } else {
        ActionError::terminal(&name, message)
    }
}

/// The error for a request that got no (complete) answer.
fn transport(e: reqwest::Error, what: &str, timeout: Duration) -> ActionError {
    let e = e.without_url();
    tracing::warn!(error = &e as &dyn std::error::Error, "{what} failed");
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let cause = causes.last().cloned().unwrap_or_else(|| e.to_string());
    if e.is_timeout() {
        ActionError::retryable(
            "Timeout",
            format!(
                "{what} did not answer within {}ms; raise `timeout` if the endpoint is slow",
                timeout.as_millis()
            ),
        )
    } else if e.is_redirect() {
        ActionError::terminal(
            "TooManyRedirects",
            format!("{what} redirected too many times ({cause}); call the final URL"),
        )
    } else if e.is_builder() {
        invalid("$", format!("{what} cannot be sent: {cause}"))
    } else {
        ActionError::retryable("ConnectionFailed", format!("{what} failed: {cause}"))
    }
}
