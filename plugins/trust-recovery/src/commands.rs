//! Operator commands (the argument is JSON text; a malformed one is `rejected`).
//!
//! | name | argument | does | reply |
//! |---|---|---|---|
//! | `import` | `"<hex>"` or `{"token": "<hex>"}` | verifies the token with the key `vendor`, stores it, offers it to every bootstrap session, writes it to the fitting registered devices; audit and event `token-imported` | `{tokenId, issuer, installation, fingerprint, issuedAt, expiresAt, offered, writtenTo, reimported}`, or `{imported: false, tokenId, reason}` for a refused token (audit and event `token-refused`) |
//! | `withdraw` | `{"tokenId": "<hex>"}` | withdraws the offer, marks the token; audit and event `token-withdrawn` | `{tokenId, withdrawn: true}` |
//! | `status` | — | | `{tokens: [..], devices: {tracked, registered, byTrustState}, bootstrapRequests: {accepted, refused}}` |
//! | `devices` | `null` or `{state?, after?, limit?}` | | `{devices: [..], next, listingTruncated}` |
//!
//! A missing vendor key rejects `import` (nothing is stored or audited). Token refusals are
//! answered rather than `rejected` because the host drops a rejected event's effects, and the
//! refusal must be audited.

use serde_json::{Map, Value as Json, json};
use steward_claims::RecoveryClaims;
use steward_claims::recovery::MAX_TOKEN_LEN;
use steward_plugin_sdk::{Command, Effect, HostError, PluginError, Value, effect, rejected};

use crate::devices::{Batch, mark_written, to_json, write_effect};
use crate::env::Env;
use crate::records::{
    DEVICE_PREFIX, DeviceRecord, MAX_ACTIVE_TOKENS, TOKEN_PATH, TokenRecord, VENDOR_KEY,
    VENDOR_KEY_MISSING, device_key, index_prefix, offer_name, unhex,
};

/// The most device records one `devices` answer holds.
const MAX_PAGE: usize = 1000;
/// A `devices` answer's size without `limit`.
const DEFAULT_PAGE: usize = 100;

pub(crate) fn command<E: Env>(env: &E, command: &Command) -> Result<Vec<Effect>, PluginError> {
    match command.name.as_str() {
        "import" => import(env, &command.argument),
        "withdraw" => withdraw(env, &command.argument),
        "status" => status(env),
        "devices" => devices(env, &command.argument),
        other => Err(rejected(format!(
            "unknown command {other} (import, withdraw, status, devices)"
        ))),
    }
}

// ---- import ----

/// The token of an `import` argument: a JSON string of hex, or `{"token": hex}`. Whitespace in
/// the hex is ignored (a token pasted from a file may be wrapped).
pub(crate) fn parse_token_argument(argument: &str) -> Result<Vec<u8>, PluginError> {
    let text = match serde_json::from_str::<Json>(argument) {
        Ok(Json::String(text)) => text,
        Ok(Json::Object(map)) => match map.get("token") {
            Some(Json::String(text)) => text.clone(),
            _ => return Err(rejected("import wants {\"token\": \"<hex>\"}")),
        },
        Ok(_) => return Err(rejected("import wants the token as a JSON string of hex")),
        Err(e) => return Err(rejected(format!("the argument is not JSON: {e}"))),
    };
    let digits: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if digits.is_empty() {
        return Err(rejected("the token is empty"));
    }
    // Hex of a token over the limit is refused (and audited) after decoding.
    if digits.len() > 4 * MAX_TOKEN_LEN {
        return Err(rejected(format!("the token is over {MAX_TOKEN_LEN} bytes")));
    }
    unhex(&digits).ok_or_else(|| rejected("the token is not hex"))
}

/// Why an import failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImportError {
    /// No key `vendor`: the command is rejected, nothing is audited.
    VendorKeyMissing,
    /// The token was refused: audited.
    Refused(String),
}

/// What can be said of a token before its signature: its size and that it is a tagged
/// COSE_Sign1 (tag 18), the only form devices accept.
pub(crate) fn check_token_form(token: &[u8]) -> Result<(), ImportError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(ImportError::Refused(format!(
            "token of {} bytes is over the {MAX_TOKEN_LEN}-byte limit",
            token.len()
        )));
    }
    if !token.starts_with(&[0xd2, 0x84]) {
        return Err(ImportError::Refused(
            "malformed: not a tagged COSE_Sign1 (tag 18)".into(),
        ));
    }
    Ok(())
}

/// Judges a token from its verification by the host (`cose_verify("vendor", token)`) at
/// `now_s`: the strict claims, the lifetime, then `iat` and `exp`. The fingerprint and the
/// installation are the devices' business.
pub(crate) fn assess_token(
    verified: Result<Vec<u8>, HostError>,
    now_s: u64,
) -> Result<RecoveryClaims, ImportError> {
    let payload = match verified {
        Ok(payload) => payload,
        Err(HostError::Denied(_)) => return Err(ImportError::VendorKeyMissing),
        Err(HostError::Invalid(why)) => {
            return Err(ImportError::Refused(format!("malformed: {why}")));
        }
        Err(HostError::Failed(why)) => {
            return Err(ImportError::Refused(format!(
                "not signed by the vendor key: {why}"
            )));
        }
    };
    let refused = |e: steward_claims::ClaimError| ImportError::Refused(e.to_string());
    let claims = RecoveryClaims::decode(&payload).map_err(refused)?;
    claims.check_lifetime().map_err(refused)?;
    claims.check_time(now_s).map_err(refused)?;
    Ok(claims)
}

/// Whether `import` writes `token` to `device` at once: registered with the token's
/// fingerprint and installation, and not done with it yet (a device that refused it before is
/// written again: importing again is how an operator retries).
pub(crate) fn is_write_target(device: &DeviceRecord, token: &TokenRecord) -> bool {
    device.registered
        && !device.fingerprint.is_empty()
        && device.fingerprint == token.fingerprint
        && device.installation == token.installation
        && !device.took(&token.token_id)
}

fn import<E: Env>(env: &E, argument: &str) -> Result<Vec<Effect>, PluginError> {
    let token = parse_token_argument(argument)?;
    let claims = match check_token_form(&token)
        .and_then(|()| assess_token(env.cose_verify(VENDOR_KEY, &token), env.now_s()))
    {
        Ok(claims) => claims,
        Err(ImportError::VendorKeyMissing) => return Err(rejected(VENDOR_KEY_MISSING)),
        Err(ImportError::Refused(reason)) => return Ok(refusal(None, &reason)),
    };
    let now_ms = env.now_ms();
    let fresh = TokenRecord::new(&token, &claims, now_ms);
    let token_id = fresh.token_id.clone();
    let existing = env.token(&token_id)?;
    let reimported = existing.is_some();
    let mut record = match existing {
        Some(existing) if !existing.same_claims(&fresh) => {
            return Ok(refusal(
                Some(&token_id),
                "another token with this id and other claims is already imported",
            ));
        }
        Some(mut existing) => {
            existing.token = fresh.token;
            existing.withdrawn = false;
            existing.withdrawn_at_ms = None;
            existing
        }
        None => fresh,
    };
    let now_s = env.now_s();
    let active_others = env
        .tokens()?
        .iter()
        .filter(|t| t.token_id != token_id && t.active(now_s))
        .count();
    if active_others >= MAX_ACTIVE_TOKENS {
        return Ok(refusal(
            Some(&token_id),
            &format!("{MAX_ACTIVE_TOKENS} tokens are active: withdraw one first"),
        ));
    }

    let mut batch = Batch::new(env);
    let mut written_to = 0u64;
    let prefix = index_prefix(&record.fingerprint);
    for key in env.kv_list(&prefix, 1000) {
        let Some(endpoint) = key.strip_prefix(&prefix) else {
            continue;
        };
        let Some(old) = env.device(endpoint)? else {
            continue;
        };
        if !is_write_target(&old, &record) {
            continue;
        }
        let mut device = old.clone();
        mark_written(&mut device, &mut record);
        device.updated_at_ms = now_ms;
        batch.put_device(Some(&old), &device)?;
        batch.push(write_effect(endpoint, &record));
        written_to += 1;
    }
    batch.put_token(&record);
    batch.push(effect::bootstrap_offer(
        offer_name(&token_id),
        TOKEN_PATH,
        Value::Opaque(token),
        vec![],
        true,
        Some(claims.expires_at.saturating_mul(1000)),
    ));
    batch.push(effect::audit(
        "token-imported",
        token_id.as_str(),
        "ok",
        format!(
            "issuer {}, installation {}, fingerprint {}, expires at {}, written to {written_to} device(s){}",
            record.issuer,
            record.installation,
            record.fingerprint,
            record.expires_at,
            if reimported { ", imported again" } else { "" }
        ),
    ));
    let summary = json!({
        "tokenId": token_id,
        "issuer": record.issuer,
        "installation": record.installation,
        "fingerprint": record.fingerprint,
        "issuedAt": record.issued_at,
        "expiresAt": record.expires_at,
        "offered": true,
        "writtenTo": written_to,
        "reimported": reimported,
    });
    batch.push(effect::emit("token-imported", summary.to_string()));
    batch.push(effect::reply(summary.to_string()));
    Ok(batch.finish())
}

/// A refused import: audited, on the event stream, and answered (not `rejected`, whose
/// effects the host would drop, audit record included).
fn refusal(token_id: Option<&str>, reason: &str) -> Vec<Effect> {
    vec![
        effect::audit("token-refused", token_id.unwrap_or("-"), "refused", reason),
        effect::emit(
            "token-refused",
            json!({ "tokenId": token_id, "reason": reason }).to_string(),
        ),
        effect::reply(
            json!({ "imported": false, "tokenId": token_id, "reason": reason }).to_string(),
        ),
    ]
}

// ---- withdraw ----

fn withdraw<E: Env>(env: &E, argument: &str) -> Result<Vec<Effect>, PluginError> {
    let token_id = match serde_json::from_str::<Json>(argument) {
        Ok(Json::Object(map)) => match map.get("tokenId") {
            Some(Json::String(id)) => id.to_ascii_lowercase(),
            _ => return Err(rejected("withdraw wants {\"tokenId\": \"<hex>\"}")),
        },
        Ok(Json::String(id)) => id.to_ascii_lowercase(),
        _ => return Err(rejected("withdraw wants {\"tokenId\": \"<hex>\"}")),
    };
    if token_id.len() != 32 || unhex(&token_id).is_none() {
        return Err(rejected("tokenId is 32 hex digits"));
    }
    let Some(mut record) = env.token(&token_id)? else {
        return Err(rejected(format!("no token {token_id}")));
    };
    if !record.withdrawn {
        record.withdrawn = true;
        record.withdrawn_at_ms = Some(env.now_ms());
    }
    Ok(vec![
        effect::kv_put(crate::records::token_key(&token_id), to_json(&record)),
        effect::withdraw_offer(offer_name(&token_id)),
        effect::audit("token-withdrawn", token_id.as_str(), "ok", ""),
        effect::emit(
            "token-withdrawn",
            json!({ "tokenId": token_id }).to_string(),
        ),
        effect::reply(json!({ "tokenId": token_id, "withdrawn": true }).to_string()),
    ])
}

// ---- status ----

/// A token as `status` shows it (the token bytes left out).
pub(crate) fn token_summary(token: &TokenRecord, now_s: u64) -> Json {
    json!({
        "tokenId": token.token_id,
        "issuer": token.issuer,
        "installation": token.installation,
        "fingerprint": token.fingerprint,
        "issuedAt": token.issued_at,
        "expiresAt": token.expires_at,
        "importedAtMs": token.imported_at_ms,
        "withdrawn": token.withdrawn,
        "expired": now_s >= token.expires_at,
        "offered": token.active(now_s),
        "progress": token.progress,
    })
}

fn status<E: Env>(env: &E) -> Result<Vec<Effect>, PluginError> {
    let now_s = env.now_s();
    let tokens: Vec<Json> = env
        .tokens()?
        .iter()
        .map(|t| token_summary(t, now_s))
        .collect();
    let stats = env.stats()?;
    Ok(vec![effect::reply(
        json!({
            "tokens": tokens,
            "devices": {
                "tracked": stats.devices,
                "registered": stats.registered,
                "byTrustState": stats.by_trust_state,
            },
            "bootstrapRequests": {
                "accepted": stats.bootstrap_accepted,
                "refused": stats.bootstrap_refused,
            },
        })
        .to_string(),
    )])
}

// ---- devices ----

/// The `devices` argument: `null` or `{"state"?, "after"?, "limit"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub state: Option<String>,
    pub after: Option<String>,
    pub limit: usize,
}

pub(crate) fn parse_page(argument: &str) -> Result<Page, PluginError> {
    let map = match serde_json::from_str::<Json>(argument) {
        Ok(Json::Null) => Map::new(),
        Ok(Json::Object(map)) => map,
        _ => {
            return Err(rejected(
                "devices wants null or {\"state\"?, \"after\"?, \"limit\"?}",
            ));
        }
    };
    let text = |field: &str| match map.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(rejected(format!("{field} must be a string"))),
    };
    let limit = match map.get("limit") {
        None | Some(Json::Null) => DEFAULT_PAGE,
        Some(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| rejected(format!("limit is 1..={MAX_PAGE}")))?,
    };
    Ok(Page {
        state: text("state")?,
        after: text("after")?,
        limit,
    })
}

fn devices<E: Env>(env: &E, argument: &str) -> Result<Vec<Effect>, PluginError> {
    let page = parse_page(argument)?;
    let keys = env.kv_list(DEVICE_PREFIX, 1000);
    let listing_full = keys.len() >= 1000;
    let after = page.after.as_deref().map(device_key);
    let mut devices = Vec::new();
    let mut more = false;
    for key in keys
        .iter()
        .filter(|key| after.as_ref().is_none_or(|after| *key > after))
    {
        let Some(device) = env.record::<DeviceRecord>(key)? else {
            continue;
        };
        if page
            .state
            .as_deref()
            .is_some_and(|state| !device.matches_state(state))
        {
            continue;
        }
        if devices.len() == page.limit {
            more = true;
            break;
        }
        devices.push(device);
    }
    let next = more
        .then(|| devices.last().map(|d| d.endpoint.clone()))
        .flatten();
    Ok(vec![effect::reply(
        json!({
            "devices": devices,
            "next": next,
            // The host lists at most 1000 keys: later devices are not reachable yet.
            "listingTruncated": listing_full && !more,
        })
        .to_string(),
    )])
}
