//! Signed webhook deliveries, `POST /hooks/{name}`.
//!
//! The sender signs `"{timestamp}.{body}"` with the tenant's webhook secret (HMAC-SHA256) and
//! sends three headers: `X-Eventflow-Timestamp` (Unix seconds), `X-Eventflow-Signature`
//! (`v1=<hex>`) and `X-Eventflow-Delivery` (an id unique per delivery). A delivery is refused
//! when the signature is wrong or the timestamp is more than five minutes off; the caller then
//! refuses a delivery id it has seen before, and uses the id as the start's idempotency key so
//! a redelivery starts nothing new.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-eventflow-timestamp";
pub const SIGNATURE_HEADER: &str = "x-eventflow-signature";
pub const DELIVERY_HEADER: &str = "x-eventflow-delivery";
/// How far a delivery's timestamp may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "the header {0} is missing; signed deliveries carry {TIMESTAMP_HEADER}, {SIGNATURE_HEADER} and {DELIVERY_HEADER}"
    )]
    Missing(&'static str),
    #[error("the header {header} is malformed: {why}")]
    Malformed { header: &'static str, why: String },
    #[error(
        "the signature does not match the body and timestamp; sign \"{{timestamp}}.{{body}}\" with HMAC-SHA256 and the hook's secret"
    )]
    BadSignature,
    #[error(
        "the timestamp is {0} s away from now, more than the {TOLERANCE_SECONDS} s allowed; sign deliveries when sending them"
    )]
    Stale(i64),
}

/// The headers of a delivery, as the HTTP layer found them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub delivery: Option<&'a str>,
}

/// The MAC of `"{timestamp}.{body}"`.
fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Signs a delivery: what a sender puts in `X-Eventflow-Signature`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a delivery at `now` (Unix seconds); returns its delivery id.
pub fn verify<'a>(
    secret: &[u8],
    headers: Headers<'a>,
    body: &[u8],
    now: i64,
) -> Result<&'a str, WebhookError> {
    let ts = headers
        .timestamp
        .ok_or(WebhookError::Missing(TIMESTAMP_HEADER))?;
    let sig = headers
        .signature
        .ok_or(WebhookError::Missing(SIGNATURE_HEADER))?;
    let delivery = headers
        .delivery
        .ok_or(WebhookError::Missing(DELIVERY_HEADER))?;
    if delivery.is_empty() || delivery.len() > 200 {
        return Err(WebhookError::Malformed {
            header: DELIVERY_HEADER,
            why: "give an id of 1 to 200 characters".into(),
        });
    }
    let timestamp: i64 = ts.trim().parse().map_err(|_| WebhookError::Malformed {
        header: TIMESTAMP_HEADER,
        why: format!("`{ts}` is not Unix seconds"),
    })?;
    let hex_sig = sig
        .trim()
        .strip_prefix("v1=")
        .ok_or(WebhookError::Malformed {
            header: SIGNATURE_HEADER,
            why: "write it as v1=<hex HMAC-SHA256>".into(),
        })?;
    let given = hex::decode(hex_sig).map_err(|_| WebhookError::Malformed {
        header: SIGNATURE_HEADER,
        why: "the signature is not hex".into(),
    })?;
    // verify_slice compares in constant time.
    mac(secret, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| WebhookError::BadSignature)?;
    let skew = now - timestamp;
    if skew.abs() > TOLERANCE_SECONDS {
        return Err(WebhookError::Stale(skew));
    }
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const NOW: i64 = 1_795_000_000;

    fn headers<'a>(ts: &'a str, sig: &'a str) -> Headers<'a> {
        Headers {
            timestamp: Some(ts),
            signature: Some(sig),
            delivery: Some("dlv-1"),
        }
    }

    #[test]
    fn a_signed_delivery_is_accepted_and_names_its_delivery() {
        let body = br#"{"event":{"id":"rust-nation"}}"#;
        let sig = sign(SECRET, NOW - 10, body);
        let ts = (NOW - 10).to_string();
        assert_eq!(verify(SECRET, headers(&ts, &sig), body, NOW), Ok("dlv-1"));
    }

    #[test]
    fn a_wrong_signature_a_changed_body_or_another_secret_is_refused() {
        let body = b"{}";
        let ts = NOW.to_string();
        let sig = sign(SECRET, NOW, body);
        assert_eq!(
            verify(SECRET, headers(&ts, &sig), b"{ }", NOW),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(b"other", headers(&ts, &sig), body, NOW),
            Err(WebhookError::BadSignature)
        );
        let shifted = (NOW + 1).to_string();
        assert_eq!(
            verify(SECRET, headers(&shifted, &sig), body, NOW),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn a_timestamp_more_than_five_minutes_off_is_refused() {
        let body = b"{}";
        for (offset, ok) in [
            (-300, true),
            (300, true),
            (-301, false),
            (301, false),
            (-86_400, false),
        ] {
            let ts = NOW + offset;
            let (sig, ts) = (sign(SECRET, ts, body), ts.to_string());
            let result = verify(SECRET, headers(&ts, &sig), body, NOW);
            assert_eq!(result.is_ok(), ok, "offset {offset}: {result:?}");
        }
    }

    #[test]
    fn missing_and_malformed_headers_say_which() {
        let none = Headers::default();
        assert_eq!(
            verify(SECRET, none, b"", NOW),
            Err(WebhookError::Missing(TIMESTAMP_HEADER))
        );
        let bad = headers("yesterday", "v1=00");
        assert!(matches!(
            verify(SECRET, bad, b"", NOW),
            Err(WebhookError::Malformed {
                header: TIMESTAMP_HEADER,
                ..
            })
        ));
        let bad = headers("1", "sha256=00");
        assert!(matches!(
            verify(SECRET, bad, b"", NOW),
            Err(WebhookError::Malformed {
                header: SIGNATURE_HEADER,
                ..
            })
        ));
    }
}
