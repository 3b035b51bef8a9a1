//! `steward security`: the credentials devices authenticate with, managed offline in the data
//! directory (the server holds the store's lock while it runs, so stop it first; the management
//! API will do the same on a running server).
//!
//! ```text
//! steward security add-psk  --data-dir DIR --endpoint EP [--identity ID] --key HEX
//! steward security add-x509 --data-dir DIR --endpoint EP [--cn CN]
//! steward security list     --data-dir DIR
//! steward security remove   --data-dir DIR --endpoint EP
//! ```

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::store::{Credential, SecurityInfo, SledStore, Store, StoreError};

#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// The server's data directory (the store lives there).
    #[arg(long, default_value = "./steward-data", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub action: SecurityAction,
}

#[derive(Debug, Subcommand)]
pub enum SecurityAction {
    /// Add or replace a DTLS-PSK credential. The identity defaults to the endpoint name, which
    /// the registration check requires them to match.
    AddPsk {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        identity: Option<String>,
        /// The key in hex (16 bytes or more recommended; LwM2M requires up to 64 supported).
        #[arg(long)]
        key: String,
    },
    /// Expect an X.509 client certificate (chaining to a configured device CA) with this CN.
    AddX509 {
        #[arg(long)]
        endpoint: String,
        /// Defaults to the endpoint name.
        #[arg(long)]
        cn: Option<String>,
    },
    /// List every endpoint's credential (keys are not printed).
    List,
    /// Remove an endpoint's credential.
    Remove {
        #[arg(long)]
        endpoint: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityCliError {
    #[error("the key must be an even number of hex digits, 1 to 64 bytes: {0}")]
    BadKey(String),
    #[error("an endpoint name must not be empty")]
    EmptyEndpoint,
    #[error("no credential for endpoint {0:?}")]
    NotFound(String),
    #[error("store: {0} (is `steward serve` running on this data directory? stop it first)")]
    Store(#[from] StoreError),
}

/// Runs one action against an open store; returns the lines to print.
pub fn run(store: &dyn Store, action: &SecurityAction) -> Result<Vec<String>, SecurityCliError> {
    match action {
        SecurityAction::AddPsk {
            endpoint,
            identity,
            key,
        } => {
            non_empty(endpoint)?;
            let key = parse_hex_key(key)?;
            let identity = identity.clone().unwrap_or_else(|| endpoint.clone());
            let info = SecurityInfo {
                endpoint: endpoint.clone(),
                credential: Credential::Psk {
                    identity: identity.clone().into_bytes(),
                    key,
                },
            };
            let replaced = store.put_security(&info)?;
            Ok(vec![format!(
                "{} PSK for {endpoint} (identity {identity:?})",
                if replaced.is_some() {
                    "replaced"
                } else {
                    "added"
                }
            )])
        }
        SecurityAction::AddX509 { endpoint, cn } => {
            non_empty(endpoint)?;
            let expected_cn = cn.clone().unwrap_or_else(|| endpoint.clone());
            let info = SecurityInfo {
                endpoint: endpoint.clone(),
                credential: Credential::X509 {
                    expected_cn: expected_cn.clone(),
                    pinned_sha256: None,
                },
            };
            let replaced = store.put_security(&info)?;
            Ok(vec![format!(
                "{} X.509 for {endpoint} (CN {expected_cn:?})",
                if replaced.is_some() {
                    "replaced"
                } else {
                    "added"
                }
            )])
        }
        SecurityAction::List => Ok(store
            .security_infos()?
            .iter()
            .map(|info| format!("{}\t{}", info.endpoint, describe(&info.credential)))
            .collect()),
        SecurityAction::Remove { endpoint } => match store.remove_security(endpoint)? {
            Some(_) => Ok(vec![format!("removed the credential of {endpoint}")]),
            None => Err(SecurityCliError::NotFound(endpoint.clone())),
        },
    }
}

/// Opens the store in `args.data_dir` and runs the action.
pub fn run_in_data_dir(args: &SecurityArgs) -> Result<Vec<String>, SecurityCliError> {
    let store = SledStore::open(&args.data_dir)?;
    let lines = run(&store, &args.action)?;
    store.flush()?;
    Ok(lines)
}

fn describe(credential: &Credential) -> String {
    match credential {
        Credential::Psk { identity, key } => format!(
            "psk identity={:?} key={} bytes",
            String::from_utf8_lossy(identity),
            key.len()
        ),
        Credential::X509 {
            expected_cn,
            pinned_sha256,
        } => format!(
            "x509 cn={expected_cn:?}{}",
            if pinned_sha256.is_some() {
                " pinned"
            } else {
                ""
            }
        ),
        other => format!("{other:?}"),
    }
}

fn non_empty(endpoint: &str) -> Result<(), SecurityCliError> {
    if endpoint.is_empty() {
        Err(SecurityCliError::EmptyEndpoint)
    } else {
        Ok(())
    }
}

fn parse_hex_key(hex: &str) -> Result<Vec<u8>, SecurityCliError> {
    let bad = || SecurityCliError::BadKey(hex.chars().take(20).collect());
    let digits = hex.trim();
    if digits.is_empty() || !digits.len().is_multiple_of(2) || digits.len() > 128 {
        return Err(bad());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn store(name: &str) -> (TempDir, SledStore) {
        let dir = std::env::temp_dir().join(format!(
            "steward-security-cli-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SledStore::open(&dir).expect("store opens");
        (TempDir(dir), store)
    }

    #[test]
    fn add_list_replace_remove() {
        let (_dir, store) = store("crud");
        let add = SecurityAction::AddPsk {
            endpoint: "dev-1".into(),
            identity: None,
            key: "00112233445566778899aabbccddeeff".into(),
        };
        assert_eq!(
            run(&store, &add).expect("adds"),
            ["added PSK for dev-1 (identity \"dev-1\")"]
        );
        assert!(run(&store, &add).expect("replaces")[0].starts_with("replaced"));
        let x509 = SecurityAction::AddX509 {
            endpoint: "dev-2".into(),
            cn: None,
        };
        run(&store, &x509).expect("adds");
        let listed = run(&store, &SecurityAction::List).expect("lists");
        assert_eq!(
            listed,
            [
                "dev-1\tpsk identity=\"dev-1\" key=16 bytes",
                "dev-2\tx509 cn=\"dev-2\""
            ]
        );
        let found = store
            .security_by_psk_identity(b"dev-1")
            .expect("reads")
            .expect("found by identity");
        assert_eq!(found.endpoint, "dev-1");
        let remove = SecurityAction::Remove {
            endpoint: "dev-1".into(),
        };
        run(&store, &remove).expect("removes");
        assert!(matches!(
            run(&store, &remove),
            Err(SecurityCliError::NotFound(_))
        ));
    }

    #[test]
    fn bad_keys_and_names_are_refused() {
        let (_dir, store) = store("bad");
        for key in ["", "abc", "zz", &"00".repeat(65)] {
            let add = SecurityAction::AddPsk {
                endpoint: "dev".into(),
                identity: None,
                key: key.to_owned(),
            };
            assert!(
                matches!(run(&store, &add), Err(SecurityCliError::BadKey(_))),
                "{key:?}"
            );
        }
        let add = SecurityAction::AddX509 {
            endpoint: String::new(),
            cn: None,
        };
        assert!(matches!(
            run(&store, &add),
            Err(SecurityCliError::EmptyEndpoint)
        ));
        assert!(
            run(&store, &SecurityAction::List)
                .expect("lists")
                .is_empty()
        );
    }
}
