//! COSE_Sign1 (RFC 9052 §4.2) with ES256, and the P-256 PEM keys that sign and verify it. No I/O:
//! callers read key files and messages themselves.
//!
//! The server's plugin host signs and verifies on plugins' behalf and checks signed plugin
//! manifests with these functions; the simulated device in `client-sim` uses them too, so the
//! rules below hold on both ends.
//!
//! # Messages we sign
//!
//! [`cose_sign1_es256`] makes a **tagged** (CBOR tag 18) COSE_Sign1 with the protected header
//! `{1: -7}` (alg ES256), plus `4: kid` when a kid is given, an empty unprotected header, the
//! payload attached, no external AAD, and the signature as raw `r || s` (32 bytes each, 64 in
//! all; RFC 9053 §2.1), not DER. The message may be at most [`MAX_MESSAGE_LEN`] bytes.
//!
//! # Messages we accept
//!
//! [`cose_verify1_es256`] (and [`cose_sign1_kid`], which reads the kid without verifying) accept a
//! COSE_Sign1 that is:
//!
//! - **tagged or untagged**: tag 18 in its one-byte form (`0xd2`), or a bare 4-array. Any other
//!   tag (COSE_Sign's 98, an unknown one) is refused.
//! - **ES256 in the protected header**: the algorithm must be protected by the signature, so a
//!   message that names ES256 only in the unprotected header is refused (cose-wg's
//!   `sign-pass-01` is such a message), and so is one whose unprotected header names another
//!   algorithm.
//! - **without `crit`**: we understand no critical header parameter, so any is refused
//!   (RFC 9052 §3.1 lets a recipient refuse what it does not understand).
//! - **with the payload attached**: a detached (`nil`) payload is refused.
//! - **one CBOR item**: trailing bytes after the message are refused.
//! - **at most [`MAX_MESSAGE_LEN`] bytes**, checked before decoding.
//! - **signed with empty external AAD**, the signature 64 bytes (`r || s`).
//!
//! The Sig_structure is built from the protected header *as sent* (its original bytes), as
//! RFC 9052 §4.4 requires: re-encoding the same header differently breaks the signature.
//!
//! The kid comes from the protected header, else the unprotected one, empty when neither has
//! one. It only helps a verifier choose a key: whoever checks that the kid matches the key it
//! chose does so on its own; the signature is what proves who signed.
//!
//! # Errors
//!
//! [`CoseError`] is split by who is at fault: the message ([`CoseError::Invalid`]), the signature
//! ([`CoseError::BadSignature`]: a well-formed message that the key did not sign), our key
//! ([`CoseError::Key`]), or signing itself ([`CoseError::Sign`]).

use coset::iana;
use coset::{
    Algorithm, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable,
};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};

pub use p256::ecdsa::{SigningKey, VerifyingKey};

/// The largest COSE_Sign1 message [`cose_sign1_es256`] makes and [`cose_verify1_es256`] and
/// [`cose_sign1_kid`] read: 64 KiB.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// The length of an ES256 signature: `r || s`, 32 bytes each.
pub const ES256_SIGNATURE_LEN: usize = 64;

/// Why a COSE operation failed. `Display` carries no category prefix: the variant is the
/// category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseError {
    /// The message is not one we accept (see the [module docs](self)): not a COSE_Sign1, an
    /// algorithm other than ES256, `crit`, a detached payload, trailing bytes, a signature that
    /// is not 64 bytes, over [`MAX_MESSAGE_LEN`]. Also a payload too large to sign.
    #[error("{0}")]
    Invalid(String),
    /// A well-formed message whose signature does not verify with the key.
    #[error("bad signature")]
    BadSignature,
    /// The PEM holds no P-256 key of the kind needed, or signing was asked of a public key.
    #[error("{0}")]
    Key(String),
    /// Signing or encoding failed (neither happens with a valid key in practice).
    #[error("{0}")]
    Sign(String),
}

/// Signs `payload` as a tagged COSE_Sign1 with ES256: protected header `{1: -7, 4: kid}` (no kid
/// when `kid` is empty), payload attached, no external AAD. `Invalid` if the message would be
/// over [`MAX_MESSAGE_LEN`].
pub fn cose_sign1_es256(
    signing_key: &SigningKey,
    kid: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>, CoseError> {
    if payload.len() > MAX_MESSAGE_LEN {
        return Err(CoseError::Invalid(format!(
            "payload of {} bytes is over the {MAX_MESSAGE_LEN}-byte limit",
            payload.len()
        )));
    }
    let mut protected = HeaderBuilder::new().algorithm(iana::Algorithm::ES256);
    if !kid.is_empty() {
        protected = protected.key_id(kid.to_vec());
    }
    let message = CoseSign1Builder::new()
        .protected(protected.build())
        .payload(payload.to_vec())
        .try_create_signature(&[], |tbs| {
            let signature: Signature = signing_key
                .try_sign(tbs)
                .map_err(|e| CoseError::Sign(format!("ECDSA signing failed: {e}")))?;
            Ok::<_, CoseError>(signature.to_bytes().to_vec())
        })?
        .build()
        .to_tagged_vec()
        .map_err(|e| CoseError::Sign(format!("encoding COSE_Sign1: {e}")))?;
    if message.len() > MAX_MESSAGE_LEN {
        return Err(CoseError::Invalid(format!(
            "signed message of {} bytes is over the {MAX_MESSAGE_LEN}-byte limit",
            message.len()
        )));
    }
    Ok(message)
}

/// Verifies a COSE_Sign1 (tagged or untagged, ES256 in the protected header, payload attached,
/// at most [`MAX_MESSAGE_LEN`] bytes) with `verifying_key` and returns `(payload, kid)`, the kid
/// empty when the message has none.
///
/// `Invalid` for a message we do not accept, `BadSignature` for one that `verifying_key` did not
/// sign. The kid is not compared with anything.
pub fn cose_verify1_es256(
    verifying_key: &VerifyingKey,
    message: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CoseError> {
    let sign1 = parse_sign1_es256(message)?;
    if sign1.signature.len() != ES256_SIGNATURE_LEN {
        return Err(CoseError::Invalid(format!(
            "ES256 signature is {} bytes, not {ES256_SIGNATURE_LEN}",
            sign1.signature.len()
        )));
    }
    // r or s zero or not below the group order: no key can have made it.
    let signature = Signature::from_slice(&sign1.signature).map_err(|_| CoseError::BadSignature)?;
    sign1.verify_signature(&[], |_, tbs| {
        verifying_key
            .verify(tbs, &signature)
            .map_err(|_| CoseError::BadSignature)
    })?;
    let kid = kid_of(&sign1);
    // `parse_sign1_es256` refused a detached payload.
    let payload = sign1.payload.unwrap_or_default();
    Ok((payload, kid))
}

/// The kid of a COSE_Sign1 *without* verifying it, to choose the key to verify with: protected
/// header first, else unprotected, empty when absent. The same checks as
/// [`cose_verify1_es256`] except the signature's.
pub fn cose_sign1_kid(message: &[u8]) -> Result<Vec<u8>, CoseError> {
    parse_sign1_es256(message).map(|sign1| kid_of(&sign1))
}

/// Loads a P-256 private key from the first key block of a PEM: PKCS#8 (`PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`); an `EC PARAMETERS` block before it (as `openssl ecparam -genkey` writes)
/// is skipped. A `PUBLIC KEY` is `Key` ("a public key cannot sign"), and so is a key on another
/// curve.
pub fn load_signing_key(pem: &str) -> Result<SigningKey, CoseError> {
    let (label, block) = key_block(pem)?;
    match label {
        "PRIVATE KEY" => SigningKey::from_pkcs8_pem(block)
            .map_err(|e| CoseError::Key(format!("not a P-256 PKCS#8 private key: {e}"))),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(block)
            .map(SigningKey::from)
            .map_err(|e| CoseError::Key(format!("not a P-256 SEC1 private key: {e}"))),
        "PUBLIC KEY" => Err(CoseError::Key(
            "this is a public key; signing needs a private key".into(),
        )),
        other => Err(unsupported_label(other)),
    }
}

/// The key id of a public key, as CTL updates, recovery tokens and object 42769 name keys:
/// SHA-256 of its SubjectPublicKeyInfo DER. One definition, so that the kid a vendor signs
/// with and the id a device reports (42769/0/7) cannot drift apart.
pub fn spki_key_id(spki_der: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(spki_der).into()
}

/// [`spki_key_id`] of a P-256 public key.
pub fn verifying_key_id(key: &VerifyingKey) -> [u8; 32] {
    use p256::pkcs8::EncodePublicKey;
    // Encoding a valid P-256 point as SPKI DER does not fail.
    let der = key
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default();
    spki_key_id(&der)
}

/// Loads a P-256 public key from an SPKI (`PUBLIC KEY`) PEM, or the public half of a private key
/// PEM (as [`load_signing_key`] reads it).
pub fn load_verifying_key(pem: &str) -> Result<VerifyingKey, CoseError> {
    let (label, block) = key_block(pem)?;
    match label {
        "PUBLIC KEY" => VerifyingKey::from_public_key_pem(block)
            .map_err(|e| CoseError::Key(format!("not a P-256 SPKI public key: {e}"))),
        "PRIVATE KEY" | "EC PRIVATE KEY" => {
            load_signing_key(pem).map(|signing_key| *signing_key.verifying_key())
        }
        other => Err(unsupported_label(other)),
    }
}

/// Decodes a COSE_Sign1 and checks what we need before verifying (see the module docs).
fn parse_sign1_es256(message: &[u8]) -> Result<CoseSign1, CoseError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(CoseError::Invalid(format!(
            "message of {} bytes is over the {MAX_MESSAGE_LEN}-byte limit",
            message.len()
        )));
    }
    // coset refuses trailing bytes after the one item in both cases.
    let sign1 = if message.first() == Some(&0xd2) {
        CoseSign1::from_tagged_slice(message)
    } else {
        CoseSign1::from_slice(message)
    }
    .map_err(|e| CoseError::Invalid(format!("not a COSE_Sign1: {e}")))?;
    let es256 = Algorithm::Assigned(iana::Algorithm::ES256);
    match &sign1.protected.header.alg {
        Some(alg) if *alg == es256 => {}
        Some(alg) => {
            return Err(CoseError::Invalid(format!(
                "algorithm {alg:?} is not ES256"
            )));
        }
        None => {
            return Err(CoseError::Invalid(
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
        return Err(CoseError::Invalid(
            "the unprotected header names another algorithm".into(),
        ));
    }
    if !sign1.protected.header.crit.is_empty() {
        return Err(CoseError::Invalid(
            "critical header parameters are not supported".into(),
        ));
    }
    if sign1.payload.is_none() {
        return Err(CoseError::Invalid(
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

/// The first key block of a PEM file, as (label, the block's text), skipping `EC PARAMETERS`.
fn key_block(pem: &str) -> Result<(&str, &str), CoseError> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = &rest[start + BEGIN.len()..];
        let label_len = after_begin
            .find(DASHES)
            .ok_or_else(|| CoseError::Key("malformed PEM header".into()))?;
        let label = &after_begin[..label_len];
        let end_marker = format!("-----END {label}-----");
        let end = rest[start..]
            .find(&end_marker)
            .ok_or_else(|| CoseError::Key(format!("PEM block {label} has no end line")))?;
        let block_end = start + end + end_marker.len();
        if label != "EC PARAMETERS" {
            return Ok((label, &rest[start..block_end]));
        }
        rest = &rest[block_end..];
    }
    Err(CoseError::Key("no PEM key block".into()))
}

fn unsupported_label(label: &str) -> CoseError {
    CoseError::Key(format!(
        "PEM {label} is not a P-256 key (want PRIVATE KEY, EC PRIVATE KEY or PUBLIC KEY)"
    ))
}
