//! Device events: registrations (read `/42769/0`), the answers to the plugin's reads and
//! writes, bootstrap offer answers, deregistrations and bootstrap requests.

use serde_json::json;
use steward_plugin_sdk::{
    BootstrapRequest, Device, Effect, OfferAnswer, PluginError, RequestError, Response,
    ResponseBody, Value, effect, entry,
};

use crate::env::Env;
use crate::records::{
    DeviceRecord, INSTANCE_PATH, Kind, MAX_ENDPOINT_LEN, MAX_REASONS, OBJECT, STATS_KEY, Stats,
    TOKEN_PATH, TokenRecord, device_key, token_key, token_of_offer,
};
use crate::report::parse_report;

/// The correlation of the read of `/42769/0`.
pub(crate) const READ: &str = "read";
/// The correlation of a token write: `write:<token id>`.
pub(crate) const WRITE_PREFIX: &str = "write:";

/// The effects of one event under construction: key-value writes (device records keep the
/// fingerprint index and the stats in step) and the rest.
pub(crate) struct Batch<'e, E: Env> {
    env: &'e E,
    pub effects: Vec<Effect>,
    stats: Option<(Stats, Stats)>,
}

impl<'e, E: Env> Batch<'e, E> {
    pub fn new(env: &'e E) -> Self {
        Batch {
            env,
            effects: Vec::new(),
            stats: None,
        }
    }

    pub fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn stats(&mut self) -> Result<&mut Stats, PluginError> {
        let stats = match self.stats.take() {
            Some(stats) => stats,
            None => {
                let stats = self.env.stats()?;
                (stats.clone(), stats)
            }
        };
        Ok(&mut self.stats.insert(stats).1)
    }

    /// Stores a device record that was `old`: the record, its `index/..` entry, the stats.
    pub fn put_device(
        &mut self,
        old: Option<&DeviceRecord>,
        new: &DeviceRecord,
    ) -> Result<(), PluginError> {
        self.stats()?.replace(old, new);
        let old_index = old.and_then(DeviceRecord::index_key);
        let new_index = new.index_key();
        if let Some(old_index) = old_index.filter(|k| Some(k) != new_index.as_ref()) {
            self.push(effect::kv_delete(old_index));
        }
        if let Some(new_index) = new_index {
            self.push(effect::kv_put(new_index, new.installation.as_str()));
        }
        self.push(effect::kv_put(device_key(&new.endpoint), to_json(new)));
        Ok(())
    }

    pub fn put_token(&mut self, token: &TokenRecord) {
        self.push(effect::kv_put(token_key(&token.token_id), to_json(token)));
    }

    pub fn bootstrap_seen(&mut self, accepted: bool) -> Result<(), PluginError> {
        let stats = self.stats()?;
        if accepted {
            stats.bootstrap_accepted += 1;
        } else {
            stats.bootstrap_refused += 1;
        }
        Ok(())
    }

    /// The effects, with the stats if they changed.
    pub fn finish(mut self) -> Vec<Effect> {
        if let Some((before, after)) = self.stats.take()
            && before != after
        {
            self.effects
                .push(effect::kv_put(STATS_KEY, to_json(&after)));
        }
        self.effects
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Our records are plain structs and maps with string keys: they always serialize.
    serde_json::to_string(value).unwrap_or_default()
}

/// Whether the plugin can keep records for `endpoint` (key length).
fn trackable<E: Env>(env: &E, endpoint: &str) -> bool {
    let ok = !endpoint.is_empty() && endpoint.len() <= MAX_ENDPOINT_LEN;
    if !ok {
        env.log_warn(&format!(
            "endpoint of {} bytes not tracked (at most {MAX_ENDPOINT_LEN})",
            endpoint.len()
        ));
    }
    ok
}

/// `registered` / `updated`: read the device's Trust Recovery instance.
pub(crate) fn registered<E: Env>(env: &E, device: &Device) -> Vec<Effect> {
    let own = format!("/{OBJECT}");
    let lists_object = device
        .objects
        .iter()
        .any(|path| path == &own || path.starts_with(&format!("{own}/")));
    if !lists_object || !trackable(env, &device.endpoint) {
        return vec![];
    }
    vec![effect::read(device.endpoint.as_str(), READ, INSTANCE_PATH)]
}

/// `deregistered`: the record says so (and leaves the index).
pub(crate) fn deregistered<E: Env>(env: &E, endpoint: &str) -> Result<Vec<Effect>, PluginError> {
    if !trackable(env, endpoint) {
        return Ok(vec![]);
    }
    let Some(old) = env.device(endpoint)? else {
        return Ok(vec![]);
    };
    let mut new = old.clone();
    new.registered = false;
    new.updated_at_ms = env.now_ms();
    let mut batch = Batch::new(env);
    batch.put_device(Some(&old), &new)?;
    Ok(batch.finish())
}

/// `bootstrap-request`: counted.
pub(crate) fn bootstrap_request<E: Env>(
    env: &E,
    request: &BootstrapRequest,
) -> Result<Vec<Effect>, PluginError> {
    let mut batch = Batch::new(env);
    batch.bootstrap_seen(request.accepted)?;
    Ok(batch.finish())
}

/// `response`: to the read of `/42769/0` or to a token write.
pub(crate) fn response<E: Env>(env: &E, response: Response) -> Result<Vec<Effect>, PluginError> {
    if !trackable(env, &response.endpoint) {
        return Ok(vec![]);
    }
    if response.correlation == READ {
        return read_answered(env, &response.endpoint, response.outcome);
    }
    if let Some(token_id) = response.correlation.strip_prefix(WRITE_PREFIX) {
        return write_answered(env, &response.endpoint, token_id, response.outcome);
    }
    Ok(vec![])
}

/// What a device's report means for the tokens: which one it recovered with (newly), which
/// one to write to it. Indices into the tokens.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    pub recovered: Option<usize>,
    pub write: Option<usize>,
}

/// Decides on a device's fresh report (already applied to `device`), and counts.
///
/// - **Recovered**: the device's Last Token ID (resource 8: the last token it *accepted*)
///   names one of our tokens that was not counted as recovered for it yet. The Last Recovery
///   Outcome (9) is not required to be 1: a device that recovered and later got the same
///   offer again (bootstrapping from its initial state) reports 9 "no CTL" or 8 "already
///   used" there, while resource 8 still names the token.
/// - **Write**: among the active tokens for the device's fingerprint and installation that it
///   has not answered nor recovered with, the one that expires last.
pub(crate) fn decide_on_report(
    device: &mut DeviceRecord,
    tokens: &mut [TokenRecord],
    now_s: u64,
) -> Decision {
    let mut decision = Decision::default();
    if !device.last_token_id.is_empty()
        && let Some(i) = tokens
            .iter()
            .position(|t| t.token_id == device.last_token_id)
    {
        let token = &mut tokens[i];
        if device.count(&token.token_id, Kind::Recovered) {
            token.progress.recovered += 1;
            device.state = "recovered".into();
            device.token_id = token.token_id.clone();
            decision.recovered = Some(i);
        }
    }
    if device.registered && !device.fingerprint.is_empty() {
        decision.write = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.active(now_s)
                    && t.fingerprint == device.fingerprint
                    && t.installation == device.installation
                    && !device.settled(&t.token_id)
            })
            .max_by(|(_, a), (_, b)| (a.expires_at, &a.token_id).cmp(&(b.expires_at, &b.token_id)))
            .map(|(i, _)| i);
        if let Some(i) = decision.write {
            mark_written(device, &mut tokens[i]);
        }
    }
    decision
}

/// Counts a write of `token` to `device`.
pub(crate) fn mark_written(device: &mut DeviceRecord, token: &mut TokenRecord) {
    if device.count(&token.token_id, Kind::Written) {
        token.progress.written += 1;
    }
    device.state = "token-written".into();
    device.token_id = token.token_id.clone();
}

/// The write of `token` to a device.
pub(crate) fn write_effect(endpoint: &str, token: &TokenRecord) -> Effect {
    effect::write(
        endpoint,
        format!("{WRITE_PREFIX}{}", token.token_id),
        TOKEN_PATH,
        vec![entry(TOKEN_PATH, Value::Opaque(token.token_bytes()))],
        true,
    )
}

fn read_answered<E: Env>(
    env: &E,
    endpoint: &str,
    outcome: Result<ResponseBody, RequestError>,
) -> Result<Vec<Effect>, PluginError> {
    let old = env.device(endpoint)?;
    let now_ms = env.now_ms();
    let mut device = old
        .clone()
        .unwrap_or_else(|| DeviceRecord::new(endpoint, now_ms));
    device.updated_at_ms = now_ms;
    // The device answered (a value or an error code): it is registered. A request that got no
    // answer (the device left, a timeout) says nothing.
    if !matches!(outcome, Err(RequestError { code: None, .. })) {
        device.registered = true;
    }
    let mut batch = Batch::new(env);
    let report = match outcome {
        Ok(ResponseBody::Read(entries) | ResponseBody::Observing(entries)) => {
            parse_report(&entries)
        }
        Ok(_) => Err("unexpected answer to a read".into()),
        Err(error) => Err(format!("read failed: {}", error.message)),
    };
    match report {
        Ok(report) => {
            report.apply_to(&mut device);
            device.last_error.clear();
        }
        Err(error) => {
            device.last_error = error;
            batch.put_device(old.as_ref(), &device)?;
            return Ok(batch.finish());
        }
    }
    let mut tokens = env.tokens()?;
    let decision = decide_on_report(&mut device, &mut tokens, env.now_s());
    if let Some(i) = decision.recovered {
        let token = &tokens[i];
        batch.put_token(token);
        batch.push(effect::audit(
            "device-recovered",
            endpoint,
            "ok",
            format!("token {}", token.token_id),
        ));
        batch.push(effect::emit(
            "device-recovered",
            json!({
                "endpoint": endpoint,
                "tokenId": token.token_id,
                "recovered": token.progress.recovered,
            })
            .to_string(),
        ));
    }
    if let Some(i) = decision.write {
        let token = &tokens[i];
        if decision.recovered != Some(i) {
            batch.put_token(token);
        }
        batch.push(write_effect(endpoint, token));
    }
    batch.put_device(old.as_ref(), &device)?;
    Ok(batch.finish())
}

/// A device's answer to a token, from a bootstrap session or a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Accepted,
    /// Refused, with the reason: the device's diagnostic, or its code when it gave none.
    Refused(String),
}

impl Answer {
    pub fn new(code: &str, diagnostic: &str) -> Answer {
        if code == "2.04" {
            Answer::Accepted
        } else if diagnostic.is_empty() {
            Answer::Refused(code.to_owned())
        } else {
            Answer::Refused(clip(diagnostic, 128).to_owned())
        }
    }
}

/// Records a device's answer to a token and counts it, once per device and kind. A refusal
/// from a device that already accepted or recovered with the token (it gets the offer again
/// when it bootstraps from its initial state, and refuses it: no CTL, or already used) changes
/// neither its state nor the counters. Returns whether a counter moved.
pub(crate) fn record_answer(
    device: &mut DeviceRecord,
    token: &mut TokenRecord,
    answer: &Answer,
) -> bool {
    let id = token.token_id.clone();
    let progress = &mut token.progress;
    match answer {
        Answer::Accepted => {
            let answered = device.count(&id, Kind::Answered);
            let accepted = device.count(&id, Kind::Accepted);
            progress.answered += u64::from(answered);
            progress.accepted += u64::from(accepted);
            if !device.has(&id, Kind::Recovered) {
                device.state = "token-accepted".into();
                device.token_id = id;
            }
            answered || accepted
        }
        Answer::Refused(reason) => {
            if device.took(&id) {
                return false;
            }
            device.state = format!("refused: {reason}");
            device.token_id = id.clone();
            let answered = device.count(&id, Kind::Answered);
            let refused = device.count(&id, Kind::Refused);
            progress.answered += u64::from(answered);
            if refused {
                progress.refused += 1;
                let key = if progress.refused_by.len() < MAX_REASONS
                    || progress.refused_by.contains_key(reason)
                {
                    reason.clone()
                } else {
                    "other".into()
                };
                *progress.refused_by.entry(key).or_default() += 1;
            }
            answered || refused
        }
    }
}

/// `offer-answered`: a device answered a bootstrap offer.
pub(crate) fn offer_answered<E: Env>(
    env: &E,
    answer: &OfferAnswer,
) -> Result<Vec<Effect>, PluginError> {
    let Some(token_id) = token_of_offer(&answer.offer) else {
        env.log_warn(&format!("answer to an unknown offer {}", answer.offer));
        return Ok(vec![]);
    };
    answered(
        env,
        &answer.endpoint,
        token_id,
        &answer.code,
        &answer.diagnostic,
        "offer-answered",
    )
}

fn write_answered<E: Env>(
    env: &E,
    endpoint: &str,
    token_id: &str,
    outcome: Result<ResponseBody, RequestError>,
) -> Result<Vec<Effect>, PluginError> {
    match outcome {
        Ok(ResponseBody::Written) => {
            answered(env, endpoint, token_id, "2.04", "", "write-answered")
        }
        Ok(_) => Ok(vec![]),
        Err(RequestError {
            code: Some(code),
            message,
        }) => answered(
            env,
            endpoint,
            token_id,
            &code,
            diagnostic_of(&message),
            "write-answered",
        ),
        // No answer (timeout, the device went away ...): not an answer; written again at its
        // next registration or update.
        Err(RequestError {
            code: None,
            message,
        }) => {
            let Some(old) = env.device(endpoint)? else {
                return Ok(vec![]);
            };
            let mut device = old.clone();
            if device.took(token_id) {
                return Ok(vec![]);
            }
            device.state = format!("write-failed: {}", clip(&message, 128));
            device.token_id = token_id.to_owned();
            device.updated_at_ms = env.now_ms();
            let mut batch = Batch::new(env);
            batch.put_device(Some(&old), &device)?;
            Ok(batch.finish())
        }
    }
}

/// The device's diagnostic in the host's message for an error answer (`"the device answered
/// 4.03 Forbidden: <diagnostic>"`); empty when there is none.
fn diagnostic_of(message: &str) -> &str {
    message
        .strip_prefix("the device answered ")
        .and_then(|rest| rest.split_once(": "))
        .map_or("", |(_, diagnostic)| diagnostic)
}

fn answered<E: Env>(
    env: &E,
    endpoint: &str,
    token_id: &str,
    code: &str,
    diagnostic: &str,
    kind: &str,
) -> Result<Vec<Effect>, PluginError> {
    if !trackable(env, endpoint) {
        return Ok(vec![]);
    }
    let Some(mut token) = env.token(token_id)? else {
        env.log_warn(&format!(
            "answer from {endpoint} about unknown token {token_id}"
        ));
        return Ok(vec![]);
    };
    let old = env.device(endpoint)?;
    let now_ms = env.now_ms();
    let mut device = old
        .clone()
        .unwrap_or_else(|| DeviceRecord::new(endpoint, now_ms));
    device.updated_at_ms = now_ms;
    let answer = Answer::new(code, diagnostic);
    let counted = record_answer(&mut device, &mut token, &answer);
    let mut batch = Batch::new(env);
    if counted {
        batch.put_token(&token);
    }
    batch.put_device(old.as_ref(), &device)?;
    batch.push(effect::emit(
        kind,
        json!({
            "endpoint": endpoint,
            "tokenId": token.token_id,
            "code": code,
            "diagnostic": diagnostic,
            "accepted": token.progress.accepted,
            "refused": token.progress.refused,
        })
        .to_string(),
    ));
    Ok(batch.finish())
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
