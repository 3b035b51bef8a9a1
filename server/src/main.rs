//! `steward`: the Steward server binary.
//!
//! ```text
//! steward serve [--config FILE] [--bind IP] [--coap-port N] [--coaps-port N]
//!               [--data-dir DIR] [--allow-unsecured[=BOOL]] [--default-lifetime S]
//!               [--expiry-grace S]
//! steward demo  [--data-dir DIR] [--devices N] [--coap-port N] [--coaps-port N]
//!               [--plugin FILE] [--recovery-devices N] [--recovery-plugin FILE]
//! steward security add-psk|add-x509|list|remove --data-dir DIR ...
//! steward ca init|import|show|manufacturer|allow-list|issued|revoke|crl [--data-dir DIR] ...
//! steward bootstrap import FILE.json | export [--data-dir DIR]
//! steward plugins list|reload|disable NAME|enable NAME|command NAME CMD [JSON] [--api URL]
//! steward plugins sign --key KEY.pem --signer NAME FILE.wasm
//! steward vendor init|admin|serve|sign|request|audit ...   (the vendor's recovery service)
//! ```
//!
//! Settings come from flags, then `STEWARD_*` variables, then the TOML file, then the defaults
//! (see `steward::config`). Logs go to stderr, filtered by `RUST_LOG` (default `info`). Once the
//! listeners are up, one line goes to stdout:
//! `steward: listening coap=IP:PORT coaps=IP:PORT data=DIR`. SIGINT or SIGTERM stops the server
//! gracefully.
//!
//! `steward demo` runs a server and simulated devices in-process (see `steward::demo`), prints a
//! line per step and a summary, and exits 0 only if every step passed. Its logs default to
//! `warn` so they do not drown the steps.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use steward::config::{Config, ConfigError, ServeArgs};
use steward::demo::{self, DemoArgs, DemoOptions};
use steward::pki_cli::{self, BootstrapArgs, CaArgs};
use steward::plugins_cli::{self, PluginsArgs};
use steward::runtime;
use steward::security_cli::{self, SecurityArgs};
use steward::vendor::cli::{self as vendor_cli, VendorArgs};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "steward", version, about = "Steward: an LwM2M server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the LwM2M server (CoAP and CoAPs) on a data directory.
    Serve(ServeArgs),
    /// Start a server and simulated devices, run every operation once, print a summary.
    Demo(DemoArgs),
    /// Manage device credentials (PSK, X.509) in a data directory; stop the server first.
    Security(SecurityArgs),
    /// Manage the CA, manufacturers, allow-list and revocations offline; stop the server first.
    Ca(CaArgs),
    /// Import or export bootstrap configurations (Leshan JSON) offline; stop the server first.
    Bootstrap(BootstrapArgs),
    /// List, reload, disable, enable and command the running server's plugins; sign one.
    Plugins(PluginsArgs),
    /// The device vendor's recovery service: its key, administrators, HTTP API and audit log.
    Vendor(VendorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        Command::Vendor(ref args) if args.is_serve() => "info",
        // The demo's in-process devices connect by IP address, without a TLS server name,
        // which webrtc-dtls warns about on every handshake.
        Command::Demo(_) => "warn,webrtc_dtls=error",
        Command::Security(_)
        | Command::Ca(_)
        | Command::Bootstrap(_)
        | Command::Plugins(_)
        | Command::Vendor(_) => "warn",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Demo(args) => run_demo(&args),
        Command::Security(args) => match security_cli::run_in_data_dir(&args) {
            Ok(lines) => {
                lines.iter().for_each(|l| println!("{l}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("steward security: {e}");
                ExitCode::from(2)
            }
        },
        Command::Ca(args) => print_lines("steward ca", pki_cli::run_ca_args(&args)),
        Command::Bootstrap(args) => {
            print_lines("steward bootstrap", pki_cli::run_bootstrap_args(&args))
        }
        Command::Plugins(args) => match plugins_cli::run(&args) {
            Ok(lines) => {
                lines.iter().for_each(|l| println!("{l}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("steward plugins: {e}");
                ExitCode::from(2)
            }
        },
        Command::Vendor(args) => {
            match vendor_cli::run(&args, &mut std::io::stdout(), &mut std::io::stderr()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("steward vendor: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Prints an offline command's lines, or its error with exit code 2.
fn print_lines(what: &str, result: Result<Vec<String>, pki_cli::PkiCliError>) -> ExitCode {
    match result {
        Ok(lines) => {
            lines.iter().for_each(|l| println!("{l}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::from(2)
        }
    }
}

/// The multi-threaded tokio runtime both subcommands run on; a failure is reported here.
fn async_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("steward: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn run_demo(args: &DemoArgs) -> ExitCode {
    let rt = match async_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let options = DemoOptions::from(args);
    let mut out = std::io::stdout();
    match rt.block_on(demo::run(&options, &mut out)) {
        Ok(summary) if summary.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("steward demo: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("steward: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match async_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        // Handlers first: a signal that arrives once the "listening" line is out must find
        // them installed, or it would kill the process without a shutdown.
        let signals = Signals::install();
        let server = runtime::start(&config).await?;
        println!(
            "steward: listening coap={} coaps={} data={}",
            server.coap_addr(),
            server.coaps_addr(),
            config.data_dir.display()
        );
        match signals.wait().await {
            Ok(signal) => tracing::info!(signal, "shutting down"),
            Err(e) => tracing::error!(error = %e, "cannot wait for signals; shutting down"),
        }
        server.shutdown().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steward: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
    let mut vars = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if !k.starts_with("STEWARD_") {
            continue;
        }
        let v = v
            .into_string()
            .map_err(|_| ConfigError::EnvNotUtf8 { var: k.to_owned() })?;
        vars.push((k.to_owned(), v));
    }
    let (config, unknown) = Config::load(args, vars)?;
    for var in unknown {
        tracing::warn!(%var, "unknown STEWARD_ environment variable ignored");
    }
    tracing::info!(%config, "configuration");
    Ok(config)
}

/// SIGINT and SIGTERM, caught from the moment they are installed.
struct Signals(std::io::Result<(Signal, Signal)>);

impl Signals {
    fn install() -> Signals {
        Signals(
            signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?))),
        )
    }

    /// Waits for SIGINT or SIGTERM; returns its name.
    async fn wait(self) -> std::io::Result<&'static str> {
        let (mut term, mut int) = self.0?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
}
