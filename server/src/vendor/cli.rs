//! `steward vendor ...`: the vendor service from the command line (the commands are listed in
//! the [module docs](super)).
//!
//! Output that scripts capture goes alone to stdout: the bearer token of `admin add`, the
//! token hex of `sign` and `request` without `--out`. Notes for the human go to stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::audit::time;
use super::client::{self, ClientError};
use super::request::{SignInput, hex};
use super::{DEFAULT_ISSUER, Issued, Origin, VendorError, VendorService};

/// `steward vendor`.
#[derive(Debug, Args)]
pub struct VendorArgs {
    #[command(subcommand)]
    pub command: VendorCommand,
}

/// The vendor service's data directory.
#[derive(Debug, Args)]
pub struct DataDir {
    /// The vendor service's data directory (key, administrators, audit log).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum VendorCommand {
    /// Create the vendor recovery key and database in a new data directory.
    Init {
        #[command(flatten)]
        dir: DataDir,
        /// The issuer (`iss`) written into every token [default: steward-vendor].
        #[arg(long, value_name = "NAME")]
        issuer: Option<String>,
    },
    /// Add, list or remove the administrators who may ask for tokens.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Serve the HTTP API until SIGINT or SIGTERM.
    Serve {
        #[command(flatten)]
        dir: DataDir,
        /// Where to listen (plain HTTP: keep it on loopback behind a TLS proxy).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
    /// Sign a recovery token offline on the service's machine (audited, channel "cli").
    Sign {
        #[command(flatten)]
        dir: DataDir,
        /// The administrator on whose behalf the token is signed.
        #[arg(long, value_name = "NAME")]
        admin: String,
        #[command(flatten)]
        token: TokenRequest,
    },
    /// Ask a running vendor service for a recovery token (the administrator's client).
    Request {
        /// The vendor service's base URL.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8090")]
        url: String,
        /// The administrator's bearer token [env: STEWARD_VENDOR_TOKEN] (the variable keeps
        /// it out of the process list).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        #[command(flatten)]
        request: TokenRequest,
    },
    /// Print the audit log, newest last.
    Audit {
        #[command(flatten)]
        dir: DataDir,
        /// Only the last N records.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Add an administrator and print its bearer token (shown only this once).
    Add {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// The administrators and when they were added.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Remove an administrator: its token stops working; its audit records stay.
    Remove {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

/// What a token is asked for.
#[derive(Debug, Args)]
pub struct TokenRequest {
    /// SHA-256 of the CTL the devices are stuck with: 64 hex digits.
    #[arg(long, value_name = "HEX")]
    pub fingerprint: String,
    /// The installation the token is scoped to.
    #[arg(long, value_name = "ID")]
    pub installation: String,
    /// How long the token lives, in seconds [default: 604800, 7 days; at most 30 days].
    #[arg(long, value_name = "SECONDS")]
    pub lifetime: Option<u64>,
    /// Write the token (hex) to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum VendorCliError {
    #[error("{0}")]
    Service(#[from] VendorError),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("no bearer token: pass --token or set STEWARD_VENDOR_TOKEN")]
    NoToken,
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot wait for signals: {0}")]
    Signals(std::io::Error),
}

impl VendorArgs {
    /// `serve` logs at info; the one-shot commands only warn.
    pub fn is_serve(&self) -> bool {
        matches!(self.command, VendorCommand::Serve { .. })
    }
}

/// Runs the command, writing what it prints to `out` (stdout) and `notes` (stderr).
pub fn run(
    args: &VendorArgs,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), VendorCliError> {
    let stdout = |e| VendorCliError::Io {
        path: PathBuf::from("<stdout>"),
        source: e,
    };
    match &args.command {
        VendorCommand::Init { dir, issuer } => {
            let service =
                VendorService::init(&dir.data_dir, issuer.as_deref().unwrap_or(DEFAULT_ISSUER))?;
            writeln!(
                out,
                "vendor key created in {}: issuer {}, key id {}\npublic key for devices: {}",
                dir.data_dir.display(),
                service.issuer(),
                hex(&service.key_id()),
                dir.data_dir.join(super::key::PUBLIC_FILE).display()
            )
            .map_err(stdout)?;
        }
        VendorCommand::Admin { action } => admin(action, out, notes)?,
        VendorCommand::Serve { dir, listen } => serve(&dir.data_dir, *listen, out)?,
        VendorCommand::Sign { dir, admin, token } => {
            let service = VendorService::open(&dir.data_dir)?;
            let input = SignInput {
                fingerprint: token.fingerprint.clone(),
                installation: token.installation.clone(),
                lifetime_seconds: token.lifetime,
            };
            let issued = service.sign(admin, &Origin::cli(), &input)?;
            deliver(
                &issued.token,
                token.out.as_deref(),
                &summary(&issued),
                out,
                notes,
            )?;
        }
        VendorCommand::Request {
            url,
            token,
            request,
        } => {
            let bearer = token
                .clone()
                .or_else(|| std::env::var("STEWARD_VENDOR_TOKEN").ok())
                .filter(|t| !t.is_empty())
                .ok_or(VendorCliError::NoToken)?;
            let received = client::request_token(
                url,
                &bearer,
                &request.fingerprint,
                &request.installation,
                request.lifetime,
            )?;
            let a = &received.answer;
            let summary = format!(
                "recovery token {} for installation {:?}, fingerprint {}, valid until {}, {} bytes",
                a["tokenId"].as_str().unwrap_or("?"),
                request.installation,
                a["fingerprint"].as_str().unwrap_or("?"),
                time(a["expiresAt"].as_u64().unwrap_or(0)),
                received.token.len()
            );
            deliver(
                &received.token,
                request.out.as_deref(),
                &summary,
                out,
                notes,
            )?;
        }
        VendorCommand::Audit { dir, limit } => {
            let service = VendorService::open(&dir.data_dir)?;
            for record in service.audit(limit.unwrap_or(usize::MAX))? {
                writeln!(out, "{}", record.line()).map_err(stdout)?;
            }
        }
    }
    Ok(())
}

fn admin(
    action: &AdminAction,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), VendorCliError> {
    let stdout = |e| VendorCliError::Io {
        path: PathBuf::from("<stdout>"),
        source: e,
    };
    match action {
        AdminAction::Add { name, dir } => {
            let service = VendorService::open(&dir.data_dir)?;
            let token = service.add_admin(name)?;
            let _ = writeln!(
                notes,
                "administrator {name} added; its bearer token follows, shown only this once"
            );
            writeln!(out, "{}", token.expose()).map_err(stdout)?;
        }
        AdminAction::List { dir } => {
            let service = VendorService::open(&dir.data_dir)?;
            for admin in service.admins()? {
                writeln!(out, "{}\tadded {}", admin.name, time(admin.created_at))
                    .map_err(stdout)?;
            }
        }
        AdminAction::Remove { name, dir } => {
            let service = VendorService::open(&dir.data_dir)?;
            if !service.remove_admin(name)? {
                return Err(VendorError::UnknownAdmin(name.clone()).into());
            }
            writeln!(out, "administrator {name} removed").map_err(stdout)?;
        }
    }
    Ok(())
}

/// Writes the token hex to `file` (then the summary to `out`), or to `out` alone (then the
/// summary to `notes`), so that stdout holds only the token when it is captured.
fn deliver(
    token: &[u8],
    file: Option<&Path>,
    summary: &str,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), VendorCliError> {
    let stdout = |e| VendorCliError::Io {
        path: PathBuf::from("<stdout>"),
        source: e,
    };
    match file {
        Some(path) => {
            std::fs::write(path, format!("{}\n", hex(token))).map_err(|source| {
                VendorCliError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            writeln!(out, "{summary} -> {}", path.display()).map_err(stdout)?;
        }
        None => {
            writeln!(out, "{}", hex(token)).map_err(stdout)?;
            let _ = writeln!(notes, "{summary}");
        }
    }
    Ok(())
}

fn summary(issued: &Issued) -> String {
    format!(
        "recovery token {} for installation {:?}, fingerprint {}, valid until {}, {} bytes \
         (audit #{})",
        hex(&issued.claims.token_id),
        issued.claims.installation,
        hex(&issued.claims.ctl_fingerprint),
        time(issued.claims.expires_at),
        issued.token.len(),
        issued.audit_seq
    )
}

/// `steward vendor serve`: one line on stdout once listening, then until SIGINT or SIGTERM.
fn serve(dir: &Path, listen: SocketAddr, out: &mut dyn Write) -> Result<(), VendorCliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let service = VendorService::open(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(VendorCliError::Runtime)?;
    rt.block_on(async {
        // Handlers first: a signal that arrives once the "listening" line is out must find
        // them installed, or it would kill the process without a shutdown.
        let mut term = signal(SignalKind::terminate()).map_err(VendorCliError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(VendorCliError::Signals)?;
        let key_id = hex(&service.key_id());
        let running = super::serve(service, listen).await?;
        writeln!(
            out,
            "steward vendor: listening http://{} data={} key-id={key_id}",
            running.local_addr(),
            dir.display()
        )
        .and_then(|()| out.flush())
        .map_err(|source| VendorCliError::Io {
            path: PathBuf::from("<stdout>"),
            source,
        })?;
        let signal = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal, "vendor service shutting down");
        running.shutdown().await;
        Ok(())
    })
}
