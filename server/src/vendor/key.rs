//! The vendor recovery key on disk: `vendor-key.pem` (P-256, PKCS#8, mode 0600) and
//! `vendor-public.pem` (SubjectPublicKeyInfo PEM: what devices are built with).
//!
//! Both are created once, by `steward vendor init`, with `create_new`: a key is never
//! overwritten, because every device in the field trusts its public half. The key id (the COSE
//! `kid` of every token, and resource 7 "Vendor Key ID" of object 42769) is the SHA-256 of the
//! public key's SubjectPublicKeyInfo DER, so a device or an operator can tell from the public
//! PEM alone which key a token names.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use steward_pki::cose::{SigningKey, load_signing_key};

use super::VendorError;

/// The private key's file name in the data directory.
pub const KEY_FILE: &str = "vendor-key.pem";
/// The public key's file name in the data directory.
pub const PUBLIC_FILE: &str = "vendor-public.pem";

const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// The loaded vendor key: the signing half, the public PEM and the key id.
pub struct VendorKey {
    signing: SigningKey,
    public_pem: String,
    key_id: [u8; 32],
}

// By hand, so that the private key never reaches a log line.
impl std::fmt::Debug for VendorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorKey")
            .field("key_id", &super::request::hex(&self.key_id))
            .finish_non_exhaustive()
    }
}

impl VendorKey {
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The SubjectPublicKeyInfo PEM, as in `vendor-public.pem`.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn key_id(&self) -> [u8; 32] {
        self.key_id
    }
}

/// Whether either key file is present (a dangling symlink counts: `create_new` would refuse it).
pub fn find_existing(dir: &Path) -> Result<Option<PathBuf>, VendorError> {
    for name in [KEY_FILE, PUBLIC_FILE] {
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Ok(Some(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(VendorError::Io { path, source: e }),
        }
    }
    Ok(None)
}

/// Generates a P-256 key and writes both files as new files. On failure, removes what this call
/// wrote, so that a retry is not blocked by half a key.
pub fn create(dir: &Path) -> Result<(), VendorError> {
    let (private_pem, public_pem) = generate().map_err(|e| VendorError::Key {
        path: dir.join(KEY_FILE),
        reason: format!("cannot generate a P-256 key: {e}"),
    })?;
    let files = [
        (KEY_FILE, private_pem.as_slice(), SECRET_MODE),
        (PUBLIC_FILE, public_pem.as_slice(), PUBLIC_MODE),
    ];
    let mut written = Vec::new();
    for (name, bytes, mode) in files {
        let path = dir.join(name);
        if let Err(e) = write_new(&path, bytes, mode) {
            // An existing file made `write_new` fail before touching it: it is not ours.
            if !matches!(e, VendorError::AlreadyInitialised(_)) {
                written.push(path);
            }
            for p in &written {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
        written.push(path);
    }
    // The directory entries must be durable too, not just the contents.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| VendorError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Reads the key files and checks that they belong together: a public file that does not
/// match the private key would have devices built with a key that cannot verify any token.
pub fn load(dir: &Path) -> Result<VendorKey, VendorError> {
    let key_path = dir.join(KEY_FILE);
    let public_path = dir.join(PUBLIC_FILE);
    let key_error = |path: &Path, reason: String| VendorError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let private_pem = fs::read_to_string(&key_path).map_err(|source| VendorError::Io {
        path: key_path.clone(),
        source,
    })?;
    warn_if_exposed(&key_path);
    let signing =
        load_signing_key(&private_pem).map_err(|e| key_error(&key_path, e.to_string()))?;
    let pkey = PKey::private_key_from_pem(private_pem.as_bytes())
        .map_err(|e| key_error(&key_path, format!("unreadable: {e}")))?;
    let spki_der = pkey
        .public_key_to_der()
        .map_err(|e| key_error(&key_path, format!("no public key: {e}")))?;
    let public_pem = fs::read_to_string(&public_path).map_err(|source| VendorError::Io {
        path: public_path.clone(),
        source,
    })?;
    let public = PKey::public_key_from_pem(public_pem.as_bytes())
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| key_error(&public_path, format!("not a public key PEM: {e}")))?;
    if public != spki_der {
        return Err(key_error(
            &public_path,
            format!("does not match {KEY_FILE}: restore the pair from the same backup"),
        ));
    }
    Ok(VendorKey {
        signing,
        public_pem,
        key_id: key_id(&spki_der),
    })
}

/// The key id of a SubjectPublicKeyInfo DER (the COSE kid of the tokens).
pub use steward_pki::cose::spki_key_id as key_id;

/// A new P-256 key: (PKCS#8 PEM, SubjectPublicKeyInfo PEM).
fn generate() -> Result<(Vec<u8>, Vec<u8>), openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key: PKey<Private> = PKey::from_ec_key(EcKey::generate(&group)?)?;
    Ok((key.private_key_to_pem_pkcs8()?, key.public_key_to_pem()?))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), VendorError> {
    let io = |source| VendorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        // Applied at creation: the key is never readable by others, not even for the moment
        // between create and chmod.
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                VendorError::AlreadyInitialised(path.to_path_buf())
            } else {
                io(e)
            }
        })?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Warns when the key is readable by group or others (copied around, restored by a tool with
/// another umask). Not fatal: refusing to start would not protect a key already exposed.
fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "vendor recovery key is accessible to group or others; chmod 600 it"
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn created_once_with_owner_only_key_and_a_matching_public_half() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_existing(dir.path()).unwrap(), None);
        create(dir.path()).unwrap();
        let mode = |name| {
            fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(PUBLIC_FILE), 0o644);
        let key = load(dir.path()).unwrap();
        assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        let der = PKey::public_key_from_pem(key.public_pem().as_bytes())
            .unwrap()
            .public_key_to_der()
            .unwrap();
        assert_eq!(key.key_id(), key_id(&der));
        // The signing key is the PEM's.
        let verifying = steward_pki::cose::load_verifying_key(key.public_pem()).unwrap();
        assert_eq!(&verifying, key.signing_key().verifying_key());
        let before = fs::read(dir.path().join(KEY_FILE)).unwrap();
        assert!(matches!(
            create(dir.path()),
            Err(VendorError::AlreadyInitialised(_))
        ));
        assert_eq!(fs::read(dir.path().join(KEY_FILE)).unwrap(), before);
        assert!(format!("{key:?}").contains("key_id"));
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_public_file_of_another_key_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        create(a.path()).unwrap();
        create(b.path()).unwrap();
        fs::copy(b.path().join(PUBLIC_FILE), a.path().join(PUBLIC_FILE)).unwrap();
        let e = load(a.path()).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }
}
