//! Named ES256 keys for plugins: the host signs and verifies COSE_Sign1 messages on a plugin's
//! behalf, so private keys never enter a plugin.
//!
//! Layout: `<keys_dir>/<plugin>/<key>.pem`, where the PEM is a P-256 private key (PKCS#8
//! `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, an `EC PARAMETERS` block before it is skipped) or a
//! P-256 public key (SPKI `PUBLIC KEY`). A plugin can only name keys in its own folder: both
//! names must match `[a-z0-9_-]{1,64}`, checked before any path is built, so `..`, `/`, empty
//! and uppercase names are refused. Files are read on every call (they are tiny), so a key added
//! while the server runs is found at once.
//!
//! Messages are COSE_Sign1 with ES256 as [`steward_pki::cose`] makes and accepts them (its
//! module docs give the rules): we sign with the protected header `{1: -7, 4: kid}`, the key
//! name as kid, and an attached payload, tagged (18); we verify tagged or untagged messages with
//! ES256 in the protected header. [`Keyring::verify`] does not compare the kid with the key
//! name: the plugin chose the key, and the signature is what proves who signed.
//!
//! Error messages name keys as `<plugin>/<key>`, never by host path: they go back to plugins.

use std::io::ErrorKind;
use std::path::PathBuf;

use steward_pki::cose::{self, CoseError};

/// The largest COSE message [`Keyring`] signs or verifies, and the largest payload it signs
/// ([`cose::MAX_MESSAGE_LEN`]).
pub const MAX_MESSAGE_LEN: usize = cose::MAX_MESSAGE_LEN;

/// The longest plugin, key or signer name.
pub const MAX_NAME_LEN: usize = 64;

/// A plugin's named keys, under `<keys_dir>/<plugin>/<key>.pem`.
#[derive(Debug, Clone)]
pub struct Keyring {
    dir: PathBuf,
}

/// Why a key operation failed. The plugin host maps these to the WIT `host-error`; the message
/// (`Display`) carries no category prefix, the variant is the category.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The plugin or key name is not allowed, or there is no such key: `denied`.
    #[error("{0}")]
    Denied(String),
    /// A malformed COSE message, an algorithm other than ES256, a detached payload, an input over
    /// the size limit: `invalid`.
    #[error("{0}")]
    Invalid(String),
    /// A well-formed message whose signature does not verify with the key.
    #[error("bad signature")]
    BadSignature,
    /// The key file is unreadable or not a P-256 key, or signing was asked of a public key:
    /// `failed`.
    #[error("{0}")]
    Failed(String),
}

impl Keyring {
    pub fn new(keys_dir: impl Into<PathBuf>) -> Keyring {
        Keyring {
            dir: keys_dir.into(),
        }
    }

    /// Signs `payload` with `<plugin>/<key>` as a tagged COSE_Sign1 (ES256), protected header
    /// `{alg: ES256, kid: key name}`, payload attached.
    pub fn sign(&self, plugin: &str, key: &str, payload: &[u8]) -> Result<Vec<u8>, KeyError> {
        // Before the key is read, so that the size is the error whatever the names.
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(KeyError::Invalid(format!(
                "payload of {} bytes is over the {MAX_MESSAGE_LEN}-byte limit",
                payload.len()
            )));
        }
        let pem = self.read_key(plugin, key)?;
        let signing_key = cose::load_signing_key(&pem).map_err(|e| key_error(e, plugin, key))?;
        cose::cose_sign1_es256(&signing_key, key.as_bytes(), payload)
            .map_err(|e| key_error(e, plugin, key))
    }

    /// Verifies a COSE_Sign1 (tagged or untagged, ES256 in the protected header, payload
    /// attached) with `<plugin>/<key>` (a public key, or the public half of a private key) and
    /// returns its payload.
    pub fn verify(&self, plugin: &str, key: &str, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        // Before the key is read, as in `sign`.
        if message.len() > MAX_MESSAGE_LEN {
            return Err(KeyError::Invalid(format!(
                "message of {} bytes is over the {MAX_MESSAGE_LEN}-byte limit",
                message.len()
            )));
        }
        let pem = self.read_key(plugin, key)?;
        let verifying_key =
            cose::load_verifying_key(&pem).map_err(|e| key_error(e, plugin, key))?;
        let (payload, _kid) = cose::cose_verify1_es256(&verifying_key, message)
            .map_err(|e| key_error(e, plugin, key))?;
        Ok(payload)
    }

    /// Reads `<dir>/<plugin>/<key>.pem` once both names are known to be safe.
    fn read_key(&self, plugin: &str, key: &str) -> Result<String, KeyError> {
        if !is_valid_name(plugin) {
            return Err(KeyError::Denied(format!(
                "plugin name {plugin:?} is not allowed (want [a-z0-9_-]{{1,{MAX_NAME_LEN}}})"
            )));
        }
        if !is_valid_name(key) {
            return Err(KeyError::Denied(format!(
                "key name {key:?} is not allowed (want [a-z0-9_-]{{1,{MAX_NAME_LEN}}})"
            )));
        }
        let path = self.dir.join(plugin).join(format!("{key}.pem"));
        match std::fs::read_to_string(&path) {
            Ok(pem) => Ok(pem),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(KeyError::Denied(format!(
                "no key '{key}' for plugin '{plugin}'"
            ))),
            Err(e) => Err(KeyError::Failed(format!(
                "key '{plugin}/{key}' is unreadable: {e}"
            ))),
        }
    }
}

/// Whether `name` may name a plugin's folder, a key or a signer: `[a-z0-9_-]{1,64}`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A [`CoseError`] from `<plugin>/<key>` as the plugin sees it: a key that does not load is
/// named, a failed signing is `Failed`.
fn key_error(e: CoseError, plugin: &str, key: &str) -> KeyError {
    match e {
        CoseError::Invalid(why) => KeyError::Invalid(why),
        CoseError::BadSignature => KeyError::BadSignature,
        CoseError::Key(why) => KeyError::Failed(format!("key '{plugin}/{key}': {why}")),
        CoseError::Sign(why) => KeyError::Failed(why),
    }
}

#[cfg(test)]
mod tests {
    //! The keyring: file layout, names, and how [`CoseError`]s reach plugins. What is signed and
    //! accepted is tested in steward-pki (`tests/cose_sign1.rs`, `tests/cose_vectors.rs`).
    #![allow(clippy::unwrap_used)]

    use super::*;
    use coset::TaggedCborSerializable;
    use coset::iana;
    use coset::{Algorithm, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;

    struct TestKey {
        /// SEC1 `EC PRIVATE KEY`.
        sec1: String,
        /// PKCS#8 `PRIVATE KEY`.
        pkcs8: String,
        /// SPKI `PUBLIC KEY`.
        public: String,
    }

    /// A fresh P-256 key from OpenSSL (an implementation independent of p256).
    fn generate() -> TestKey {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
        let public = String::from_utf8(ec.public_key_to_pem().unwrap()).unwrap();
        let pkey = PKey::from_ec_key(ec).unwrap();
        let pkcs8 = String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
        TestKey {
            sec1,
            pkcs8,
            public,
        }
    }

    fn keyring_with(files: &[(&str, &str, &str)]) -> (tempfile::TempDir, Keyring) {
        let dir = tempfile::tempdir().unwrap();
        for (plugin, key, pem) in files {
            let folder = dir.path().join(plugin);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join(format!("{key}.pem")), pem).unwrap();
        }
        let keyring = Keyring::new(dir.path());
        (dir, keyring)
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let k = generate();
        let (_dir, keyring) = keyring_with(&[
            ("recovery", "device-ca", &k.sec1),
            ("recovery", "pkcs8", &k.pkcs8),
            ("recovery", "public", &k.public),
        ]);
        let message = keyring.sign("recovery", "device-ca", b"hello").unwrap();
        assert_eq!(message[0], 0xd2, "tagged COSE_Sign1");
        assert_eq!(
            keyring.verify("recovery", "device-ca", &message).unwrap(),
            b"hello"
        );
        // The same key as PKCS#8 and as a public key only.
        assert_eq!(
            keyring.verify("recovery", "pkcs8", &message).unwrap(),
            b"hello"
        );
        assert_eq!(
            keyring.verify("recovery", "public", &message).unwrap(),
            b"hello"
        );
        let by_pkcs8 = keyring.sign("recovery", "pkcs8", b"").unwrap();
        assert_eq!(
            keyring.verify("recovery", "public", &by_pkcs8).unwrap(),
            b""
        );
    }

    #[test]
    fn signed_message_has_alg_and_kid_protected() {
        let k = generate();
        let (_dir, keyring) = keyring_with(&[("p", "k-1", &k.sec1)]);
        let message = keyring.sign("p", "k-1", b"x").unwrap();
        let sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
        assert_eq!(
            sign1.protected.header.alg,
            Some(Algorithm::Assigned(iana::Algorithm::ES256))
        );
        assert_eq!(sign1.protected.header.key_id, b"k-1");
        assert!(sign1.unprotected.is_empty());
        assert_eq!(sign1.signature.len(), 64);
        assert_eq!(cose::cose_sign1_kid(&message).unwrap(), b"k-1");
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let k = generate();
        let (_dir, keyring) = keyring_with(&[("p", "k", &k.sec1)]);
        let message = keyring.sign("p", "k", b"pay 10").unwrap();
        let mut sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
        sign1.payload = Some(b"pay 99".to_vec());
        let tampered = sign1.to_tagged_vec().unwrap();
        assert!(matches!(
            keyring.verify("p", "k", &tampered),
            Err(KeyError::BadSignature)
        ));
        // A flipped bit in the signature too.
        let mut flipped = message.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            keyring.verify("p", "k", &flipped),
            Err(KeyError::BadSignature)
        ));
    }

    #[test]
    fn another_key_is_a_bad_signature() {
        let (a, b) = (generate(), generate());
        let (_dir, keyring) = keyring_with(&[("p", "a", &a.sec1), ("p", "b", &b.public)]);
        let message = keyring.sign("p", "a", b"x").unwrap();
        assert!(matches!(
            keyring.verify("p", "b", &message),
            Err(KeyError::BadSignature)
        ));
    }

    #[test]
    fn untagged_is_accepted() {
        let k = generate();
        let (_dir, keyring) = keyring_with(&[("p", "k", &k.sec1)]);
        let message = keyring.sign("p", "k", b"untagged").unwrap();
        let untagged = CoseSign1::from_tagged_slice(&message)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(untagged[0], 0x84, "a bare 4-array");
        assert_eq!(keyring.verify("p", "k", &untagged).unwrap(), b"untagged");
    }

    #[test]
    fn malformed_messages_are_invalid() {
        let k = generate();
        let (_dir, keyring) = keyring_with(&[("p", "k", &k.sec1)]);
        let es384 = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            )
            .payload(b"x".to_vec())
            .signature(vec![1; 96])
            .build()
            .to_tagged_vec()
            .unwrap();
        let mut trailing = keyring.sign("p", "k", b"x").unwrap();
        trailing.push(0);
        for bad in [
            &b""[..],
            b"hello",
            b"\xd2\x84\x40\xa0\x40", // 3 of 4 items
            &[0xff; 100],
            &es384,
            &trailing,
        ] {
            let err = keyring.verify("p", "k", bad).unwrap_err();
            assert!(matches!(err, KeyError::Invalid(_)), "{bad:02x?}: {err:?}");
        }
    }

    #[test]
    fn oversized_inputs_are_invalid() {
        let k = generate();
        let (_dir, keyring) = keyring_with(&[("p", "k", &k.sec1)]);
        let big = vec![0; MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            keyring.sign("p", "k", &big),
            Err(KeyError::Invalid(_))
        ));
        assert!(matches!(
            keyring.verify("p", "k", &big),
            Err(KeyError::Invalid(_))
        ));
        // A payload that fits but whose message would not.
        let almost = vec![0; MAX_MESSAGE_LEN];
        assert!(matches!(
            keyring.sign("p", "k", &almost),
            Err(KeyError::Invalid(_))
        ));
        // The size is checked before the names.
        assert!(matches!(
            keyring.sign("p", "../x", &big),
            Err(KeyError::Invalid(_))
        ));
        assert!(matches!(
            keyring.verify("p", "nope", &big),
            Err(KeyError::Invalid(_))
        ));
    }

    #[test]
    fn bad_names_are_denied() {
        let k = generate();
        let (dir, keyring) = keyring_with(&[("p", "k", &k.sec1)]);
        // A key one level up that traversal would reach.
        std::fs::write(dir.path().join("x.pem"), &k.sec1).unwrap();
        let message = keyring.sign("p", "k", b"x").unwrap();
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "../x",
            "..",
            "A",
            "",
            "a/b",
            "k.pem",
            "k ",
            "é",
            long.as_str(),
        ] {
            assert!(
                matches!(keyring.sign("p", bad, b"x"), Err(KeyError::Denied(_))),
                "key {bad:?}"
            );
            assert!(
                matches!(keyring.verify("p", bad, &message), Err(KeyError::Denied(_))),
                "key {bad:?}"
            );
            assert!(
                matches!(keyring.sign(bad, "k", b"x"), Err(KeyError::Denied(_))),
                "plugin {bad:?}"
            );
        }
        assert!(is_valid_name(&"a".repeat(MAX_NAME_LEN)));
        assert!(is_valid_name("a_b-0"));
    }

    #[test]
    fn missing_keys_are_denied_and_new_keys_are_found() {
        let k = generate();
        let (dir, keyring) = keyring_with(&[("p", "k", &k.sec1)]);
        assert!(matches!(
            keyring.sign("p", "nope", b"x"),
            Err(KeyError::Denied(_))
        ));
        // Another plugin's key is not visible.
        assert!(matches!(
            keyring.sign("q", "k", b"x"),
            Err(KeyError::Denied(_))
        ));
        std::fs::write(dir.path().join("p").join("later.pem"), &k.pkcs8).unwrap();
        assert!(keyring.sign("p", "later", b"x").is_ok());
    }

    #[test]
    fn unusable_keys_fail_and_are_named_without_the_path() {
        let k = generate();
        let (dir, keyring) = keyring_with(&[("p", "pub", &k.public), ("p", "junk", "hello")]);
        let host_path = dir.path().display().to_string();
        let err = keyring.sign("p", "pub", b"x").unwrap_err();
        assert!(matches!(err, KeyError::Failed(_)), "{err:?}");
        assert!(err.to_string().contains("'p/pub'"), "{err}");
        let err = keyring.sign("p", "junk", b"x").unwrap_err();
        assert!(matches!(err, KeyError::Failed(_)), "{err:?}");
        let signing_key = cose::load_signing_key(&k.sec1).unwrap();
        let message = cose::cose_sign1_es256(&signing_key, b"k", b"x").unwrap();
        let err = keyring.verify("p", "junk", &message).unwrap_err();
        assert!(matches!(err, KeyError::Failed(_)), "{err:?}");
        assert!(err.to_string().contains("'p/junk'"), "{err}");
        assert!(!err.to_string().contains(&host_path), "{err}");
    }

    /// RFC 9052 Appendix C.2.1 through a keyring, its key `11` as an SPKI PEM (the vector's own
    /// tests are in steward-pki's `tests/cose_vectors.rs`).
    #[test]
    fn rfc9052_c_2_1_verifies_through_a_keyring() {
        let point = hex("04
             bac5b11cad8f99f9c72b05cf4b9e26d244dc189f745228255a219a86d6a09eff
             20138bf82dc1b6d562be0fa54ab7804a3a64b6d72ccfed6b6fb6ed28bbfc117e");
        let key = cose::VerifyingKey::from_sec1_bytes(&point).unwrap();
        let message = hex("
            d28443a10126a10442313154546869732069732074686520636f6e74656e742e
            58408eb33e4ca31d1c465ab05aac34cc6b23d58fef5c083106c4d25a91aef0b0
            117e2af9a291aa32e14ab834dc56ed2a223444547e01f11d3b0916e5a4c345ca
            cb36");
        let pem =
            p256::pkcs8::EncodePublicKey::to_public_key_pem(&key, Default::default()).unwrap();
        let (_dir, keyring) = keyring_with(&[("p", "k11", &pem)]);
        assert_eq!(
            keyring.verify("p", "k11", &message).unwrap(),
            b"This is the content."
        );
        let mut flipped = message.clone();
        flipped[20] ^= 0x01;
        assert!(matches!(
            keyring.verify("p", "k11", &flipped),
            Err(KeyError::BadSignature)
        ));
    }
}
