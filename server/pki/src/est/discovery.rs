//! `/.well-known/core` links for the EST resources (RFC 9148 §4.1, RFC 6690 §4.1 filtering).

use super::route::EstFunction;
use super::service::EstConfig;

/// The default EST root, which RFC 9148 §4.1 requires every server to support.
pub const EST_ROOT: &str = "/.well-known/est";

/// The EST links matching `query` (Uri-Query values, e.g. `["rt=ace.est*"]`), one RFC 6690
/// link per string, in RFC 9148 §4.1's order, e.g.
/// `</.well-known/est/crts>;rt="ace.est.crts";ct="281 287"`.
///
/// Disabled optional functions (see [`EstConfig`]) are not listed; labelled profiles are not
/// listed either (clients learn labels out of band). Filtering follows RFC 6690 §4.1: every
/// query parameter must match (`name=value`, or `name=prefix*`; `ct` matches any of the
/// listed formats; a parameter without `=` only asks for the attribute to be present), and a
/// parameter naming an attribute these links do not carry matches nothing. The server joins
/// these strings with `,` into its own `/.well-known/core` answer.
pub fn discovery(config: &EstConfig, query: &[String]) -> Vec<String> {
    EstFunction::ALL
        .into_iter()
        .filter(|f| config.enabled(*f))
        .filter(|f| query.iter().all(|q| matches(*f, q)))
        .map(link)
        .collect()
}

/// [`discovery`] joined into a link-format (ct 40) payload.
pub fn discovery_payload(config: &EstConfig, query: &[String]) -> String {
    discovery(config, query).join(",")
}

fn link(function: EstFunction) -> String {
    let formats = function.response_formats();
    let ct = formats
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    // RFC 9148 §4.1 quotes ct only when it lists more than one value.
    let ct = if formats.len() > 1 {
        format!("\"{ct}\"")
    } else {
        ct
    };
    format!(
        "<{EST_ROOT}/{}>;rt=\"{}\";ct={ct}",
        function.short(),
        function.resource_type()
    )
}

fn matches(function: EstFunction, query: &str) -> bool {
    let (name, value) = match query.split_once('=') {
        Some((name, value)) => (name, Some(unquote(value))),
        None => (query, None),
    };
    let href = format!("{EST_ROOT}/{}", function.short());
    let ct: Vec<String> = function
        .response_formats()
        .iter()
        .map(u16::to_string)
        .collect();
    let candidates: Vec<&str> = match name {
        "href" => vec![href.as_str()],
        "rt" => vec![function.resource_type()],
        "ct" => ct.iter().map(String::as_str).collect(),
        _ => return false,
    };
    let Some(value) = value else {
        return true;
    };
    candidates.iter().any(|c| value_matches(c, value))
}

/// A trailing `*` is a prefix match (RFC 6690 §4.1); anything else is exact.
fn value_matches(candidate: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => candidate.starts_with(prefix),
        None => candidate == pattern,
    }
}

/// Some clients quote the value (`rt="ace.est.sen"`); RFC 6690 does not, so accept both.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}
