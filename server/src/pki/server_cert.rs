//! The LwM2M server's own DTLS certificate, issued by our CA under the `server` profile.
//!
//! Kept in `DATA_DIR/ca/server-cert.pem` (leaf + issuing CA) and `server-key.pem` (PKCS#8,
//! 0600). It is re-issued when a file is missing or unreadable, when it is not (or no longer)
//! ours, when its CN changed, when it is revoked, and once less than a third of its lifetime is
//! left: devices that sleep for weeks then still find a valid certificate, and a renewal is a
//! restart away rather than an outage.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use openssl::asn1::Asn1Time;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::X509;
use steward_pki::ca::{IssueParams, Serial};
use steward_pki::profile;
use steward_pki::records::{IssuedRecord, PkiStore};

use super::{PkiError, PkiService, unix};

pub const SERVER_CERT_FILE: &str = "server-cert.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";

pub(super) fn server_certificate(
    pki: &PkiService,
    cn: &str,
) -> Result<(String, String, Vec<u8>), PkiError> {
    // Serialised: two callers at start-up must not both issue and overwrite each other.
    let _guard = pki
        .inner
        .server_cert
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let cert_path = pki.inner.ca_dir.join(SERVER_CERT_FILE);
    let key_path = pki.inner.ca_dir.join(SERVER_KEY_FILE);
    let now = unix(SystemTime::now())?;
    match current(pki, cn, &cert_path, &key_path, now) {
        Ok(Some(found)) => return Ok(found),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, path = %cert_path.display(), "server certificate unusable; re-issuing");
        }
    }
    let profile = pki.profile(profile::SERVER)?;
    let serial = Serial::random()?;
    let generated = pki
        .inner
        .ca
        .server_keygen(cn, &profile, IssueParams::new(serial, now))?;
    let cert = generated.cert;
    pki.inner.store.put_issued(&IssuedRecord {
        serial: cert.serial.clone(),
        endpoint: cn.to_owned(),
        profile: profile::SERVER.to_owned(),
        not_before: cert.not_before,
        not_after: cert.not_after,
        der: cert.der.clone(),
        issued_at: now,
        revoked: None,
    })?;
    let key_pem =
        PKey::private_key_from_pkcs8(&generated.key.pkcs8_der)?.private_key_to_pem_pkcs8()?;
    let mut chain_pem = X509::from_der(&cert.der)?.to_pem()?;
    chain_pem.extend_from_slice(&pki.inner.ca.issuing_cert().to_pem()?);
    // Key first: a crash between the two renames leaves a new key with the old certificate,
    // which the next call sees as a mismatch and re-issues.
    write_atomic(&key_path, &key_pem, 0o600)?;
    write_atomic(&cert_path, &chain_pem, 0o644)?;
    tracing::info!(target: "steward::audit", serial = %cert.serial, cn, not_after = cert.not_after, "issued the server certificate");
    Ok((
        String::from_utf8_lossy(&chain_pem).into_owned(),
        String::from_utf8_lossy(&key_pem).into_owned(),
        cert.der,
    ))
}

/// The stored certificate if it is still good for `cn` at `now`; `None` if it must be
/// re-issued for a reason that is not an error (missing, old, other CN).
fn current(
    pki: &PkiService,
    cn: &str,
    cert_path: &Path,
    key_path: &Path,
    now: u64,
) -> Result<Option<(String, String, Vec<u8>)>, PkiError> {
    let (Some(chain_pem), Some(key_pem)) = (read_optional(cert_path)?, read_optional(key_path)?)
    else {
        return Ok(None);
    };
    let chain = X509::stack_from_pem(&chain_pem)?;
    let Some(leaf) = chain.first() else {
        return Ok(None);
    };
    let key = PKey::private_key_from_pem(&key_pem)?;
    let leaf_cn = leaf
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok());
    if !pki.issued_by_us(leaf)
        || !leaf.public_key()?.public_eq(&key)
        || leaf_cn.as_deref() != Some(cn)
    {
        return Ok(None);
    }
    let lifetime = leaf.not_before().diff(leaf.not_after())?;
    let now_asn1 = Asn1Time::from_unix(i64::try_from(now).map_err(|_| PkiError::Clock)?)?;
    let remaining = now_asn1.diff(leaf.not_after())?;
    let secs = |d: openssl::asn1::TimeDiff| i64::from(d.days) * 86_400 + i64::from(d.secs);
    if secs(remaining) <= secs(lifetime) / 3 {
        return Ok(None);
    }
    let der = leaf.to_der()?;
    if pki.is_revoked(&der)? {
        return Ok(None);
    }
    Ok(Some((
        String::from_utf8_lossy(&chain_pem).into_owned(),
        String::from_utf8_lossy(&key_pem).into_owned(),
        der,
    )))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PkiError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Writes `bytes` to a temporary file created with `mode` (so a key is never readable by
/// others, not even briefly), fsyncs it and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let io = |path: PathBuf| move |e| PkiError::Io { path, source: e };
    let tmp = path.with_extension("pem.tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(tmp.clone()))?;
    file.write_all(bytes).map_err(io(tmp.clone()))?;
    file.sync_all().map_err(io(tmp.clone()))?;
    fs::rename(&tmp, path).map_err(io(path.to_path_buf()))
}
