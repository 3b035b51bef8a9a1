//! The administrator's client of the vendor API (`steward vendor request`): asks for a
//! recovery token and checks that the answer is one before writing it out.

use std::time::Duration;

use serde_json::{Value, json};
use steward_pki::recovery::MAX_TOKEN_LEN;

use super::request::{Fingerprint, for_display, unhex};

/// Why a request to the vendor service failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the vendor service at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The service answered with an error; `message` is its `{"error": ..}`.
    #[error("the vendor service refused ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The answer is not what the API promises.
    #[error("unexpected answer from the vendor service: {0}")]
    Answer(String),
}

/// A token as the service returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub token: Vec<u8>,
    /// The whole JSON answer (token id, times, size, ...).
    pub answer: Value,
}

/// `POST {base}/api/vendor/recovery-tokens`. The answer is checked against the request: a
/// token for another fingerprint or installation is refused here rather than deployed.
pub fn request_token(
    base: &str,
    token: &str,
    fingerprint: &str,
    installation: &str,
    lifetime: Option<u64>,
) -> Result<Received, ClientError> {
    let url = format!("{}/api/vendor/recovery-tokens", base.trim_end_matches('/'));
    let mut body = json!({"fingerprint": fingerprint, "installation": installation});
    if let Some(seconds) = lifetime {
        body["lifetimeSeconds"] = json!(seconds);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let unreachable = |e: ureq::Error| ClientError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    };
    let mut response = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {token}"))
        .send(body.to_string().as_bytes())
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(unreachable)?;
    let answer: Option<Value> = serde_json::from_str(&text).ok();
    if status != 201 {
        let message = answer
            .as_ref()
            .and_then(|a| a["error"].as_str())
            .map_or_else(|| for_display(&text), str::to_owned);
        return Err(ClientError::Refused { status, message });
    }
    let answer = answer.ok_or_else(|| ClientError::Answer("not JSON".into()))?;
    let token = answer["token"]
        .as_str()
        .and_then(unhex)
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN)
        .ok_or_else(|| ClientError::Answer("no token in hex".into()))?;
    // Compared as parsed values: the service writes lower-case hex, the administrator may have
    // typed upper case.
    let asked = Fingerprint::parse(fingerprint).ok();
    let got = answer["fingerprint"]
        .as_str()
        .and_then(|f| Fingerprint::parse(f).ok());
    if asked.is_none() || asked != got || answer["installation"].as_str() != Some(installation) {
        return Err(ClientError::Answer(
            "the token is for another fingerprint or installation than asked".into(),
        ));
    }
    Ok(Received { token, answer })
}
