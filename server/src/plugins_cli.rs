//! `steward plugins ...`: the plugin host from the command line.
//!
//! `list`, `reload`, `disable`, `enable` and `command` act on the running server through its
//! HTTP API (`/api/steward/plugins`, see `api::plugins`): plugins live in the server process,
//! so there is nothing to change offline. `sign` is offline: it writes the COSE-signed
//! manifest that pins a component's digest and signer.
//!
//! ```text
//! steward plugins list      [--api URL] [--token T]
//! steward plugins reload    [--api URL] [--token T]
//! steward plugins disable NAME | enable NAME
//! steward plugins command NAME CMD [ARGUMENT_JSON]
//! steward plugins sign --key KEY.pem --signer NAME FILE.wasm
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::plugins::describe;
use crate::plugins::keys::Keyring;
use crate::plugins::manifest;
use crate::plugins::sandbox::{Capabilities, Limits, Sandboxes};

#[derive(Debug, Args)]
pub struct PluginsArgs {
    #[command(subcommand)]
    pub command: PluginsCommand,
    /// The server's HTTP API [env: STEWARD_API; default: http://127.0.0.1:8080].
    #[arg(long, global = true, value_name = "URL")]
    pub api: Option<String>,
    /// Bearer token of the HTTP API [env: STEWARD_HTTP_TOKEN].
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// The loaded plugins, their objects and state, and what was refused.
    List,
    /// Reload the plugin directory (running events finish on the old versions).
    Reload,
    /// Stop routing events to a plugin (remembered across restarts).
    Disable { name: String },
    /// Route events to a disabled or quarantined plugin again.
    Enable { name: String },
    /// Send an operator command; prints the plugin's reply.
    Command {
        name: String,
        command: String,
        /// JSON argument [default: null].
        argument: Option<String>,
    },
    /// Write FILE.wasm.manifest: the component's SHA-256 and name, signed (ES256).
    Sign {
        /// The signer's P-256 private key (PEM).
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// The signer's name: servers trust it as `<plugins dir>/signers/<NAME>.pem`.
        #[arg(long, value_name = "NAME")]
        signer: String,
        file: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PluginsCliError {
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("{0}")]
    Invalid(String),
}

/// Runs the command; the lines to print.
pub fn run(args: &PluginsArgs) -> Result<Vec<String>, PluginsCliError> {
    let api = args
        .api
        .clone()
        .or_else(|| std::env::var("STEWARD_API").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let api = api.trim_end_matches('/').to_owned();
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("STEWARD_HTTP_TOKEN").ok());
    let client = Client { api, token };
    match &args.command {
        PluginsCommand::List => {
            let listing = client.call("GET", "/api/steward/plugins", None)?;
            Ok(list_lines(&listing))
        }
        PluginsCommand::Reload => {
            let report = client.call("POST", "/api/steward/plugins/reload", None)?;
            Ok(report_lines(&report))
        }
        PluginsCommand::Disable { name } => {
            client.call(
                "POST",
                &format!("/api/steward/plugins/{name}/disable"),
                None,
            )?;
            Ok(vec![format!("{name}: disabled")])
        }
        PluginsCommand::Enable { name } => {
            client.call("POST", &format!("/api/steward/plugins/{name}/enable"), None)?;
            Ok(vec![format!("{name}: active")])
        }
        PluginsCommand::Command {
            name,
            command,
            argument,
        } => {
            let argument: Value = match argument {
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| PluginsCliError::Invalid(format!("argument is not JSON: {e}")))?,
                None => Value::Null,
            };
            let body = serde_json::json!({"name": command, "argument": argument});
            let reply = client.call(
                "POST",
                &format!("/api/steward/plugins/{name}/commands"),
                Some(&body),
            )?;
            Ok(vec![reply.to_string()])
        }
        PluginsCommand::Sign { key, signer, file } => sign(key, signer, file),
    }
}

struct Client {
    api: String,
    token: Option<String>,
}

impl Client {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PluginsCliError> {
        let url = format!("{}{path}", self.api);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(120)))
            .build()
            .into();
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let unreachable = |e: ureq::Error| PluginsCliError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let mut response = if method == "GET" {
            let mut req = agent.get(&url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call().map_err(unreachable)?
        } else {
            let mut req = agent.post(&url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            let text = body.map(Value::to_string).unwrap_or_default();
            req.send(text.as_bytes()).map_err(unreachable)?
        };
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(unreachable)?;
        if !(200..300).contains(&status) {
            return Err(PluginsCliError::Refused { status, body: text });
        }
        serde_json::from_str(&text)
            .map_err(|e| PluginsCliError::Invalid(format!("answer is not JSON: {e}")))
    }
}

fn list_lines(listing: &Value) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<20} {:<10} {:<12} {:<24} {:>8} {:>8}",
        "NAME", "VERSION", "STATE", "OBJECTS", "OK", "FAILED"
    )];
    for p in listing["plugins"].as_array().into_iter().flatten() {
        let objects: Vec<String> = p["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Value::to_string)
            .collect();
        lines.push(format!(
            "{:<20} {:<10} {:<12} {:<24} {:>8} {:>8}",
            p["name"].as_str().unwrap_or("?"),
            p["version"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?"),
            objects.join(","),
            p["events_ok"].as_u64().unwrap_or(0),
            p["events_failed"].as_u64().unwrap_or(0),
        ));
        if let Some(e) = p["last_error"].as_str() {
            lines.push(format!("  last error: {e}"));
        }
    }
    lines.extend(refused_lines(listing));
    lines
}

fn report_lines(report: &Value) -> Vec<String> {
    let loaded: Vec<&str> = report["loaded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut lines = vec![format!("loaded: {}", loaded.join(", "))];
    lines.extend(refused_lines(report));
    lines
}

fn refused_lines(v: &Value) -> Vec<String> {
    v["refused"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "refused {}: {}",
                r["file"].as_str().unwrap_or("?"),
                r["reason"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Signs a component: its name comes from its own `describe()`, so the manifest cannot name
/// another plugin by mistake.
fn sign(key: &PathBuf, signer: &str, file: &PathBuf) -> Result<Vec<String>, PluginsCliError> {
    let invalid =
        |what: &str, e: &dyn std::fmt::Display| PluginsCliError::Invalid(format!("{what}: {e}"));
    let bytes = std::fs::read(file).map_err(|e| invalid(&file.display().to_string(), &e))?;
    let key_pem =
        std::fs::read_to_string(key).map_err(|e| invalid(&key.display().to_string(), &e))?;
    let sandboxes =
        Sandboxes::new(Limits::default(), None).map_err(|e| invalid("plugin engine", &e))?;
    let pre = sandboxes
        .prepare(&bytes)
        .map_err(|e| invalid("component", &e))?;
    let caps = Arc::new(Capabilities {
        store: None,
        keys: Keyring::new(std::env::temp_dir().join("steward-no-keys")),
        pki: None,
    });
    let description = sandboxes
        .describe(&pre, "sign", &caps)
        .map_err(|e| invalid("describe()", &e))?;
    let info = describe::parse(description, &steward_objects::ModelRegistry::core())
        .map_err(|e| invalid("describe()", &e))?;
    let version = info.version.to_string();
    let signed =
        manifest::sign_manifest(&bytes, info.name.as_str(), Some(&version), signer, &key_pem)
            .map_err(|e| invalid("manifest", &e))?;
    let out = PathBuf::from(format!("{}.manifest", file.display()));
    std::fs::write(&out, signed).map_err(|e| invalid(&out.display().to_string(), &e))?;
    Ok(vec![format!(
        "{}: plugin {} {} sha256 {} signed by {signer}",
        out.display(),
        info.name,
        version,
        manifest::sha256(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )])
}
