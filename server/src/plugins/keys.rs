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
//! Messages are COSE_Sign1 (RFC 9052 §4.2) with ES256 (raw `r || s`, 64 bytes) and no external
//! AAD. We sign with the protected header `{1: -7, 4: kid}` and an attached payload, tagged (18).
//! We verify tagged or untagged messages, require alg ES256 in the protected header, refuse
//! `crit` and detached payloads, and read the kid from the protected header, else the
//! unprotected one. [`Keyring::verify`] does not compare the kid with the key name: the plugin
//! chose the key, and the signature is what proves who signed.
//!
//! The pure functions ([`cose_sign1_es256`], [`cose_verify1_es256`], [`cose_sign1_kid`],
//! [`load_signing_key`], [`load_verifying_key`]) are shared with plugin manifests
//! ([`super::manifest`]) and anything else that signs with ES256.
//!
//! Error messages name keys as `<plugin>/<key>`, never by host path: they go back to plugins.

use std::io::ErrorKind;
use std::path::PathBuf;

use coset::iana;
use coset::{
    Algorithm, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable,
};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};

/// The largest COSE message [`Keyring`] signs or verifies, and the largest payload it signs.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

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
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(KeyError::Invalid(format!(
                "payload of {} bytes is over the {MAX_MESSAGE_LEN}-byte limit",
                payload.len()
            )));
        }
        let pem = self.read_key(plugin, key)?;
        let signing_key = load_signing_key(&pem).map_err(|e| match e {
            KeyError::Failed(why) => KeyError::Failed(format!("key '{plugin}/{key}': {why}")),
            other => other,
        })?;
        let message = cose_sign1_es256(&signing_key, key.as_bytes(), payload)?;
        if message.len() > MAX_MESSAGE_LEN {
            return Err(KeyError::Invalid(format!(
                "signed message of {} bytes is over the {MAX_MESSAGE_LEN}-byte limit",
                message.len()
            )));
        }
        Ok(message)
    }

    /// Verifies a COSE_Sign1 (tagged or untagged, ES256 in the protected header, payload
    /// attached) with `<plugin>/<key>` (a public key, or the public half of a private key) and
    /// returns its payload.
    pub fn verify(&self, plugin: &str, key: &str, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        check_message_len(message)?;
        let pem = self.read_key(plugin, key)?;
        let verifying_key = load_verifying_key(&pem).map_err(|e| match e {
            KeyError::Failed(why) => KeyError::Failed(format!("key '{plugin}/{key}': {why}")),
            other => other,
        })?;
        let (payload, _kid) = cose_verify1_es256(&verifying_key, message)?;
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

/// Signs `payload` as a tagged COSE_Sign1 with ES256: protected header `{1: -7, 4: kid}` (no kid
/// when `kid` is empty), payload attached, no external AAD. No size limit here.
pub fn cose_sign1_es256(
    signing_key: &SigningKey,
    kid: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let mut protected = HeaderBuilder::new().algorithm(iana::Algorithm::ES256);
    if !kid.is_empty() {
        protected = protected.key_id(kid.to_vec());
    }
    CoseSign1Builder::new()
        .protected(protected.build())
        .payload(payload.to_vec())
        .try_create_signature(&[], |tbs| {
            let signature: Signature = signing_key
                .try_sign(tbs)
                .map_err(|e| KeyError::Failed(format!("ECDSA signing failed: {e}")))?;
            Ok::<_, KeyError>(signature.to_bytes().to_vec())
        })?
        .build()
        .to_tagged_vec()
        .map_err(|e| KeyError::Failed(format!("encoding COSE_Sign1: {e}")))
}

/// Verifies a COSE_Sign1 (tagged or untagged) with ES256 and returns `(payload, kid)`, the kid
/// empty when the message has none. No size limit here: callers bound their inputs.
pub fn cose_verify1_es256(
    verifying_key: &VerifyingKey,
    message: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let sign1 = parse_sign1_es256(message)?;
    if sign1.signature.len() != 64 {
        return Err(KeyError::Invalid(format!(
            "ES256 signature is {} bytes, not 64",
            sign1.signature.len()
        )));
    }
    // r or s zero or not below the group order: no key can have made it.
    let signature = Signature::from_slice(&sign1.signature).map_err(|_| KeyError::BadSignature)?;
    sign1.verify_signature(&[], |_, tbs| {
        verifying_key
            .verify(tbs, &signature)
            .map_err(|_| KeyError::BadSignature)
    })?;
    let kid = kid_of(&sign1);
    // `parse_sign1_es256` refused a detached payload.
    let payload = sign1.payload.unwrap_or_default();
    Ok((payload, kid))
}

/// The kid of a COSE_Sign1 (tagged or untagged, ES256) *without* verifying it, to choose the key
/// to verify with: protected header first, else unprotected, empty when absent. Same checks
/// as [`cose_verify1_es256`] except the signature.
pub fn cose_sign1_kid(message: &[u8]) -> Result<Vec<u8>, KeyError> {
    parse_sign1_es256(message).map(|sign1| kid_of(&sign1))
}

/// Loads a P-256 private key from a PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM.
/// A public key PEM is `Failed` ("a public key cannot sign").
pub fn load_signing_key(pem: &str) -> Result<SigningKey, KeyError> {
    let (label, block) = key_block(pem)?;
    match label {
        "PRIVATE KEY" => SigningKey::from_pkcs8_pem(block)
            .map_err(|e| KeyError::Failed(format!("not a P-256 PKCS#8 private key: {e}"))),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(block)
            .map(SigningKey::from)
            .map_err(|e| KeyError::Failed(format!("not a P-256 SEC1 private key: {e}"))),
        "PUBLIC KEY" => Err(KeyError::Failed(
            "this is a public key; signing needs a private key".into(),
        )),
        other => Err(unsupported_label(other)),
    }
}

/// Loads a P-256 public key from an SPKI (`PUBLIC KEY`) PEM, or the public half of a private key
/// PEM (PKCS#8 or SEC1).
pub fn load_verifying_key(pem: &str) -> Result<VerifyingKey, KeyError> {
    let (label, block) = key_block(pem)?;
    match label {
        "PUBLIC KEY" => VerifyingKey::from_public_key_pem(block)
            .map_err(|e| KeyError::Failed(format!("not a P-256 SPKI public key: {e}"))),
        "PRIVATE KEY" | "EC PRIVATE KEY" => {
            load_signing_key(pem).map(|signing_key| *signing_key.verifying_key())
        }
        other => Err(unsupported_label(other)),
    }
}

fn check_message_len(message: &[u8]) -> Result<(), KeyError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(KeyError::Invalid(format!(
            "message of {} bytes is over the {MAX_MESSAGE_LEN}-byte limit",
            message.len()
        )));
    }
    Ok(())
}

/// Decodes a COSE_Sign1, tagged (18) or untagged, and checks what we need before verifying:
/// ES256 in the protected header (and no other alg in the unprotected one), no `crit`, an
/// attached payload.
fn parse_sign1_es256(message: &[u8]) -> Result<CoseSign1, KeyError> {
    let sign1 = if message.first() == Some(&0xd2) {
        CoseSign1::from_tagged_slice(message)
    } else {
        CoseSign1::from_slice(message)
    }
    .map_err(|e| KeyError::Invalid(format!("not a COSE_Sign1: {e}")))?;
    let es256 = Algorithm::Assigned(iana::Algorithm::ES256);
    match &sign1.protected.header.alg {
        Some(alg) if *alg == es256 => {}
        Some(alg) => {
            return Err(KeyError::Invalid(format!("algorithm {alg:?} is not ES256")));
        }
        None => {
            return Err(KeyError::Invalid(
                "no algorithm in the protected header".into(),
            ));
        }
    }
    if sign1
        .unprotected
        .alg
        .as_ref()
        .is_some_and(|alg| *alg != es256)
    {
        return Err(KeyError::Invalid(
            "the unprotected header names another algorithm".into(),
        ));
    }
    if !sign1.protected.header.crit.is_empty() {
        return Err(KeyError::Invalid(
            "critical header parameters are not supported".into(),
        ));
    }
    if sign1.payload.is_none() {
        return Err(KeyError::Invalid(
            "detached payloads are not supported".into(),
        ));
    }
    Ok(sign1)
}

fn kid_of(sign1: &CoseSign1) -> Vec<u8> {
    if sign1.protected.header.key_id.is_empty() {
        sign1.unprotected.key_id.clone()
    } else {
        sign1.protected.header.key_id.clone()
    }
}

/// The first key block of a PEM file, as (label, the block's text), skipping `EC PARAMETERS`
/// (which `openssl ecparam -genkey` writes before the key).
fn key_block(pem: &str) -> Result<(&str, &str), KeyError> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = &rest[start + BEGIN.len()..];
        let label_len = after_begin
            .find(DASHES)
            .ok_or_else(|| KeyError::Failed("malformed PEM header".into()))?;
        let label = &after_begin[..label_len];
        let end_marker = format!("-----END {label}-----");
        let end = rest[start..]
            .find(&end_marker)
            .ok_or_else(|| KeyError::Failed(format!("PEM block {label} has no end line")))?;
        let block_end = start + end + end_marker.len();
        if label != "EC PARAMETERS" {
            return Ok((label, &rest[start..block_end]));
        }
        rest = &rest[block_end..];
    }
    Err(KeyError::Failed("no PEM key block".into()))
}

fn unsupported_label(label: &str) -> KeyError {
    KeyError::Failed(format!(
        "PEM {label} is not a P-256 key (want PRIVATE KEY, EC PRIVATE KEY or PUBLIC KEY)"
    ))
}

impl From<coset::CoseError> for KeyError {
    fn from(e: coset::CoseError) -> Self {
        KeyError::Invalid(format!("COSE: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
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
        assert_eq!(cose_sign1_kid(&message).unwrap(), b"k-1");
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
    fn other_algorithms_are_invalid() {
        let k = generate();
        let (_dir, keyring) = keyring_with(&[("p", "k", &k.public)]);
        let es384 = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .key_id(b"k".to_vec())
                    .build(),
            )
            .payload(b"x".to_vec())
            .signature(vec![1; 96])
            .build()
            .to_tagged_vec()
            .unwrap();
        let err = keyring.verify("p", "k", &es384).unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");

        let no_alg = CoseSign1Builder::new()
            .payload(b"x".to_vec())
            .signature(vec![1; 64])
            .build()
            .to_tagged_vec()
            .unwrap();
        let err = keyring.verify("p", "k", &no_alg).unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn crit_is_refused() {
        let signing_key = load_signing_key(&generate().sec1).unwrap();
        let message = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES256)
                    .add_critical(iana::HeaderParameter::Alg)
                    .build(),
            )
            .payload(b"x".to_vec())
            .create_signature(&[], |tbs| {
                let s: Signature = signing_key.sign(tbs);
                s.to_bytes().to_vec()
            })
            .build()
            .to_tagged_vec()
            .unwrap();
        let err = cose_verify1_es256(signing_key.verifying_key(), &message).unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
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
    fn garbage_is_invalid() {
        let k = generate();
        let (_dir, keyring) = keyring_with(&[("p", "k", &k.public)]);
        for garbage in [
            &b""[..],
            b"\xd2",
            b"hello",
            b"\xd2\x84\x40\xa0\x40",                      // 3 of 4 items
            b"\xd8\x62\x84\x43\xa1\x01\x26\xa0\x41x\x40", // tag 98 (COSE_Sign), not 18
            &[0xff; 100],
        ] {
            let err = keyring.verify("p", "k", garbage).unwrap_err();
            assert!(
                matches!(err, KeyError::Invalid(_)),
                "{garbage:02x?}: {err:?}"
            );
        }
        // Trailing bytes after a valid message.
        let signing_key = load_signing_key(&k.sec1).unwrap();
        let mut message = cose_sign1_es256(&signing_key, b"k", b"x").unwrap();
        message.push(0);
        let err = keyring.verify("p", "k", &message).unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
        // A signature of the wrong length.
        let mut sign1 = CoseSign1::from_tagged_slice(&message[..message.len() - 1]).unwrap();
        sign1.signature.truncate(63);
        let err = keyring
            .verify("p", "k", &sign1.to_tagged_vec().unwrap())
            .unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn detached_payload_is_invalid() {
        let k = generate();
        let signing_key = load_signing_key(&k.sec1).unwrap();
        let (_dir, keyring) = keyring_with(&[("p", "k", &k.public)]);
        let detached = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES256)
                    .build(),
            )
            .create_detached_signature(b"elsewhere", &[], |tbs| {
                let s: Signature = signing_key.sign(tbs);
                s.to_bytes().to_vec()
            })
            .build()
            .to_tagged_vec()
            .unwrap();
        let err = keyring.verify("p", "k", &detached).unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
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
    fn signing_with_a_public_key_fails() {
        let k = generate();
        let (_dir, keyring) = keyring_with(&[("p", "pub", &k.public), ("p", "junk", "hello")]);
        assert!(matches!(
            keyring.sign("p", "pub", b"x"),
            Err(KeyError::Failed(_))
        ));
        assert!(matches!(
            keyring.sign("p", "junk", b"x"),
            Err(KeyError::Failed(_))
        ));
        let message = cose_sign1_es256(&load_signing_key(&k.sec1).unwrap(), b"k", b"x").unwrap();
        assert!(matches!(
            keyring.verify("p", "junk", &message),
            Err(KeyError::Failed(_))
        ));
    }

    #[test]
    fn other_curves_fail_to_load() {
        let group = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
        let public = String::from_utf8(ec.public_key_to_pem().unwrap()).unwrap();
        assert!(matches!(load_signing_key(&sec1), Err(KeyError::Failed(_))));
        assert!(matches!(
            load_verifying_key(&public),
            Err(KeyError::Failed(_))
        ));
    }

    #[test]
    fn ec_parameters_before_the_key_are_skipped() {
        let k = generate();
        let params =
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
        let pem = format!("{params}{}", k.sec1);
        let signing_key = load_signing_key(&pem).unwrap();
        let verifying_key = load_verifying_key(&k.public).unwrap();
        assert_eq!(signing_key.verifying_key(), &verifying_key);
    }

    /// Our signatures verify with OpenSSL, and OpenSSL's with us: the Sig_structure and the
    /// r || s encoding agree with an independent implementation.
    #[test]
    fn interoperates_with_openssl_ecdsa() {
        use openssl::bn::BigNum;
        use openssl::ecdsa::EcdsaSig;
        use sha2::{Digest, Sha256};

        let k = generate();
        let ec = EcKey::private_key_from_pem(k.sec1.as_bytes()).unwrap();
        let signing_key = load_signing_key(&k.sec1).unwrap();

        let message = cose_sign1_es256(&signing_key, b"kid", b"ours").unwrap();
        let sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
        let digest = Sha256::digest(sign1.tbs_data(&[]));
        let r = BigNum::from_slice(&sign1.signature[..32]).unwrap();
        let s = BigNum::from_slice(&sign1.signature[32..]).unwrap();
        let sig = EcdsaSig::from_private_components(r, s).unwrap();
        assert!(sig.verify(&digest, &ec).unwrap());

        let unsigned = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES256)
                    .build(),
            )
            .unprotected(HeaderBuilder::new().key_id(b"theirs".to_vec()).build())
            .payload(b"theirs".to_vec())
            .build();
        let digest = Sha256::digest(unsigned.tbs_data(&[]));
        let sig = EcdsaSig::sign(&digest, &ec).unwrap();
        let mut raw = sig.r().to_vec_padded(32).unwrap();
        raw.extend(sig.s().to_vec_padded(32).unwrap());
        let signed = CoseSign1 {
            signature: raw,
            ..unsigned
        }
        .to_tagged_vec()
        .unwrap();
        let verifying_key = load_verifying_key(&k.public).unwrap();
        let (payload, kid) = cose_verify1_es256(&verifying_key, &signed).unwrap();
        assert_eq!(payload, b"theirs");
        assert_eq!(kid, b"theirs", "kid from the unprotected header");
    }

    /// The COSE WG's P-256 key "11" (RFC 9052 Appendix C.7.1 / cose-wg/Examples), public
    /// coordinates only: x and y of `usWxHK2P...` / `IBOL-C3B...`, as a SEC1 point.
    fn cose_wg_key_11() -> VerifyingKey {
        let point = hex("04
             bac5b11cad8f99f9c72b05cf4b9e26d244dc189f745228255a219a86d6a09eff
             20138bf82dc1b6d562be0fa54ab7804a3a64b6d72ccfed6b6fb6ed28bbfc117e");
        VerifyingKey::from_sec1_bytes(&point).unwrap()
    }

    /// RFC 9052 Appendix C.2.1 (RFC 8152 C.2.1), "Single ECDSA Signature": signed by an
    /// independent implementation; protected {1: -7}, unprotected {4: '11'}.
    const RFC9052_C_2_1: &str = "
        d28443a10126a10442313154546869732069732074686520636f6e74656e742e
        58408eb33e4ca31d1c465ab05aac34cc6b23d58fef5c083106c4d25a91aef0b0
        117e2af9a291aa32e14ab834dc56ed2a223444547e01f11d3b0916e5a4c345ca
        cb36";

    #[test]
    fn rfc9052_c_2_1_vector_verifies() {
        let key = cose_wg_key_11();
        let message = hex(RFC9052_C_2_1);
        let (payload, kid) = cose_verify1_es256(&key, &message).unwrap();
        assert_eq!(payload, b"This is the content.");
        assert_eq!(kid, b"11");

        // Through a keyring and an SPKI PEM too.
        let pem =
            p256::pkcs8::EncodePublicKey::to_public_key_pem(&key, Default::default()).unwrap();
        let (_dir, keyring) = keyring_with(&[("p", "k11", &pem)]);
        assert_eq!(
            keyring.verify("p", "k11", &message).unwrap(),
            b"This is the content."
        );

        // One byte flipped in the payload, then in the signature.
        for at in [20, message.len() - 1] {
            let mut flipped = message.clone();
            flipped[at] ^= 0x01;
            assert!(
                matches!(
                    cose_verify1_es256(&key, &flipped),
                    Err(KeyError::BadSignature)
                ),
                "byte {at}"
            );
        }
        // What is signed is the protected header as sent: the same header {1: -7} with -7
        // encoded in two bytes (38 06) no longer verifies.
        let mut sign1 = CoseSign1::from_tagged_slice(&message).unwrap();
        sign1.protected.original_data = Some(hex("a1013806"));
        assert!(matches!(
            cose_verify1_es256(&key, &sign1.to_tagged_vec().unwrap()),
            Err(KeyError::BadSignature)
        ));
    }

    /// cose-wg/Examples `sign1-tests/sign-pass-03.json`: the same key, untagged, another
    /// signature.
    #[test]
    fn cose_wg_sign_pass_03_untagged_verifies() {
        let message = hex(
            "8443a10126a10442313154546869732069732074686520636f6e74656e742e
             5840eae868ecc176883766c5dc5ba5b8dca25dab3c2e56a551ce5705b7939143
             48e19f43d6c6ba654472da301b645b293c9ba939295b97c4bdb847782bff384c
             5794",
        );
        let (payload, kid) = cose_verify1_es256(&cose_wg_key_11(), &message).unwrap();
        assert_eq!(payload, b"This is the content.");
        assert_eq!(kid, b"11");
    }

    /// cose-wg/Examples `sign1-tests/sign-pass-01.json` carries alg only in the unprotected
    /// header (protected is an empty map): valid COSE, but we require a protected alg.
    #[test]
    fn cose_wg_sign_pass_01_unprotected_alg_is_refused() {
        let message = hex(
            "d28441a0a201260442313154546869732069732074686520636f6e74656e742e
             5840eae868ecc176883766c5dc5ba5b8dca25dab3c2e56a551ce5705b7939143
             48e11a02e5f0344bf2d4ee5c7fd75a68a9f5e0b3cc1f1fc1409c189566586ff9
             d610",
        );
        let err = cose_verify1_es256(&cose_wg_key_11(), &message).unwrap_err();
        assert!(matches!(err, KeyError::Invalid(_)), "{err:?}");
    }
}
