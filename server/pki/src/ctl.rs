//! The Certificate Trust List (CTL) of a locked-in installation (seed 000, issue 8): the trust
//! anchors a device accepts server certificates from, its canonical encoding and fingerprint, and
//! chain-linked updates. No I/O.
//!
//! # Canonical encoding
//!
//! A [`Ctl`] is a version and a set of anchors (DER certificates). Its canonical bytes are
//! deterministic CBOR (RFC 8949 §4.2.1: definite lengths, shortest heads):
//!
//! ```text
//! [ version: uint, [ * anchor: bstr ] ]
//! ```
//!
//! with the anchors **sorted bytewise by their DER bytes** (plain lexicographic order of the
//! certificates, not of their CBOR encodings) and **without duplicates**. A CTL has
//! 1..=[`MAX_ANCHORS`] anchors of 1..=[`MAX_ANCHOR_LEN`] bytes each, and its canonical bytes are
//! at most [`MAX_CTL_LEN`] so that an update carrying it fits a COSE_Sign1 of
//! [`crate::cose::MAX_MESSAGE_LEN`]. [`Ctl::from_canonical`] accepts exactly the bytes
//! [`Ctl::canonical_bytes`] makes and nothing else (unsorted, duplicate anchors, non-shortest
//! heads, indefinite lengths, trailing bytes are refused), so every CTL has one encoding and one
//! [fingerprint](Ctl::fingerprint): SHA-256 of the canonical bytes. The recovery token
//! ([`crate::recovery`]) names the CTL it may replace by that fingerprint.
//!
//! Anchors are opaque bytes here: a CTL may hold anchors of any algorithm for TLS. Only an
//! anchor that signs an update must be a P-256 certificate.
//!
//! # Chain-linked updates
//!
//! A device accepts a new CTL only if it is linked to the one it holds. A CTL update is a
//! COSE_Sign1 (ES256, [`crate::cose`]) whose payload is the canonical bytes of the **new** CTL,
//! signed with the private key of one of the **current** CTL's anchors. The kid (protected
//! header) is the SHA-256 of the signer certificate's `SubjectPublicKeyInfo` DER, as it appears
//! in the certificate ([`anchor_key_id`]); the device looks up the anchor by kid rather than
//! trying each. [`Ctl::accept_update`] also requires the new version to be strictly greater than
//! the current one, so an old update cannot be replayed to roll the list back.
//!
//! Anchor certificates are trusted keys, not chains: their validity period, extensions and
//! self-signature are not checked here (a device may not have a trustworthy clock when it needs
//! to recover).

use minicbor::Decoder;
use minicbor::data::Type;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use steward_claims::cbor::{self, MAJOR_ARRAY, MAJOR_BYTES, MAJOR_UNSIGNED};

use crate::cose::{
    CoseError, MAX_MESSAGE_LEN, SigningKey, VerifyingKey, cose_sign1_es256, cose_sign1_kid,
    cose_verify1_es256, spki_key_id,
};

/// The most anchors a CTL holds.
pub const MAX_ANCHORS: usize = 16;

/// The largest anchor certificate, in bytes: 8 KiB.
pub const MAX_ANCHOR_LEN: usize = 8 * 1024;

/// The largest canonical CTL, in bytes: 60 KiB, so that a signed update stays under
/// [`MAX_MESSAGE_LEN`] (64 KiB) with its headers and signature.
pub const MAX_CTL_LEN: usize = MAX_MESSAGE_LEN - 4 * 1024;

/// Why a CTL or a CTL update was refused. `Display` carries no category prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    /// Not the canonical encoding of a CTL, or not a COSE_Sign1 update we accept.
    #[error("{0}")]
    Malformed(String),
    /// Too many, too few or too large anchors, or a CTL over [`MAX_CTL_LEN`].
    #[error("{0}")]
    Limit(String),
    /// The update's kid names none of the current CTL's P-256 anchors.
    #[error("the update is not signed by an anchor of the current CTL")]
    UnknownSigner,
    /// The update names a current anchor but its signature does not verify with that key.
    #[error("bad signature on the CTL update")]
    Signature,
    /// The new CTL's version is not strictly greater than the current one.
    #[error("CTL version {offered} is not newer than the current version {current}")]
    NotNewer {
        /// The version of the CTL the device holds.
        current: u64,
        /// The version in the update.
        offered: u64,
    },
    /// The signer certificate is not a P-256 certificate or does not match the signing key.
    #[error("{0}")]
    Anchor(String),
    /// Signing failed.
    #[error("{0}")]
    Sign(String),
}

/// A Certificate Trust List: a version and 1..=[`MAX_ANCHORS`] distinct anchor certificates
/// (DER), kept sorted. Built by [`Ctl::new`] or [`Ctl::from_canonical`], so it always has a
/// canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctl {
    version: u64,
    anchors: Vec<Vec<u8>>,
}

impl Ctl {
    /// A CTL of `version` holding `anchors` (DER certificates, in any order; duplicates are
    /// dropped). `Limit` unless there are 1..=[`MAX_ANCHORS`] distinct anchors of
    /// 1..=[`MAX_ANCHOR_LEN`] bytes each and the encoding fits [`MAX_CTL_LEN`].
    pub fn new(version: u64, mut anchors: Vec<Vec<u8>>) -> Result<Self, CtlError> {
        anchors.sort();
        anchors.dedup();
        check_anchors(&anchors)?;
        let ctl = Self { version, anchors };
        let len = ctl.canonical_bytes().len();
        if len > MAX_CTL_LEN {
            return Err(CtlError::Limit(format!(
                "CTL of {len} bytes is over the {MAX_CTL_LEN}-byte limit"
            )));
        }
        Ok(ctl)
    }

    /// The version: updates must raise it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The anchors (DER certificates), sorted bytewise, distinct.
    pub fn anchors(&self) -> &[Vec<u8>] {
        &self.anchors
    }

    /// The canonical encoding (see the [module docs](self)).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self
                .anchors
                .iter()
                .map(|anchor| anchor.len() + 3)
                .sum::<usize>(),
        );
        cbor::head(&mut out, MAJOR_ARRAY, 2);
        cbor::head(&mut out, MAJOR_UNSIGNED, self.version);
        cbor::head(&mut out, MAJOR_ARRAY, self.anchors.len() as u64);
        for anchor in &self.anchors {
            cbor::head(&mut out, MAJOR_BYTES, anchor.len() as u64);
            out.extend_from_slice(anchor);
        }
        out
    }

    /// SHA-256 of [`Ctl::canonical_bytes`].
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// Decodes canonical CTL bytes, refusing anything [`Ctl::canonical_bytes`] would not have
    /// made: `Malformed` for bad CBOR, unsorted or duplicate anchors, non-shortest or
    /// indefinite lengths, trailing bytes; `Limit` for the size limits, checked before anything
    /// is allocated.
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, CtlError> {
        if bytes.len() > MAX_CTL_LEN {
            return Err(CtlError::Limit(format!(
                "CTL of {} bytes is over the {MAX_CTL_LEN}-byte limit",
                bytes.len()
            )));
        }
        let malformed = |e: minicbor::decode::Error| CtlError::Malformed(format!("CTL: {e}"));
        let mut decoder = Decoder::new(bytes);
        if decoder.array().map_err(malformed)? != Some(2) {
            return Err(CtlError::Malformed(
                "CTL is not a definite array of two items".into(),
            ));
        }
        if !matches!(
            decoder.datatype().map_err(malformed)?,
            Type::U8 | Type::U16 | Type::U32 | Type::U64
        ) {
            return Err(CtlError::Malformed(
                "CTL version is not an unsigned integer".into(),
            ));
        }
        let version = decoder.u64().map_err(malformed)?;
        let count = decoder
            .array()
            .map_err(malformed)?
            .ok_or_else(|| CtlError::Malformed("CTL anchors: indefinite-length array".into()))?;
        if count == 0 || count > MAX_ANCHORS as u64 {
            return Err(CtlError::Limit(format!(
                "CTL has {count} anchors, not 1..={MAX_ANCHORS}"
            )));
        }
        let mut anchors: Vec<Vec<u8>> = Vec::new();
        for _ in 0..count {
            if decoder.datatype().map_err(malformed)? != Type::Bytes {
                return Err(CtlError::Malformed(
                    "CTL anchor is not a definite byte string".into(),
                ));
            }
            let anchor = decoder.bytes().map_err(malformed)?;
            if anchor.is_empty() || anchor.len() > MAX_ANCHOR_LEN {
                return Err(CtlError::Limit(format!(
                    "CTL anchor of {} bytes, not 1..={MAX_ANCHOR_LEN}",
                    anchor.len()
                )));
            }
            if let Some(previous) = anchors.last() {
                if previous.as_slice() == anchor {
                    return Err(CtlError::Malformed("CTL has a duplicate anchor".into()));
                }
                if previous.as_slice() > anchor {
                    return Err(CtlError::Malformed(
                        "CTL anchors are not sorted bytewise".into(),
                    ));
                }
            }
            anchors.push(anchor.to_vec());
        }
        if decoder.position() != bytes.len() {
            return Err(CtlError::Malformed("trailing bytes after the CTL".into()));
        }
        let ctl = Self { version, anchors };
        // Catches non-shortest heads, which the decoder accepts.
        if ctl.canonical_bytes() != bytes {
            return Err(CtlError::Malformed(
                "CTL is not in canonical (shortest-form) encoding".into(),
            ));
        }
        Ok(ctl)
    }

    /// Checks a CTL update (see the [module docs](self)) against this, the current CTL, and
    /// returns the new CTL. `Malformed` for a message or payload we do not accept,
    /// `UnknownSigner` when the kid names none of our P-256 anchors, `Signature` when that
    /// anchor's key did not sign it, `NotNewer` when the version does not increase.
    pub fn accept_update(&self, update: &[u8]) -> Result<Ctl, CtlError> {
        let kid = cose_sign1_kid(update).map_err(update_error)?;
        let key = self
            .anchors
            .iter()
            .filter_map(|anchor| anchor_key(anchor).ok())
            .find(|(id, _)| id.as_slice() == kid.as_slice())
            .map(|(_, key)| key)
            .ok_or(CtlError::UnknownSigner)?;
        let (payload, _) = cose_verify1_es256(&key, update).map_err(update_error)?;
        let new = Ctl::from_canonical(&payload)?;
        if new.version <= self.version {
            return Err(CtlError::NotNewer {
                current: self.version,
                offered: new.version,
            });
        }
        Ok(new)
    }
}

/// Signs `new` as a CTL update with `signing_key`, the key of `signer_cert` (DER), which must be
/// an anchor of the CTL the devices hold now for them to accept it. `Anchor` if `signer_cert` is
/// not a P-256 certificate or its key is not `signing_key`'s.
pub fn sign_ctl_update(
    signing_key: &SigningKey,
    signer_cert: &[u8],
    new: &Ctl,
) -> Result<Vec<u8>, CtlError> {
    let (kid, key) = anchor_key(signer_cert)?;
    if key != *signing_key.verifying_key() {
        return Err(CtlError::Anchor(
            "the signer certificate's key is not the signing key".into(),
        ));
    }
    cose_sign1_es256(signing_key, &kid, &new.canonical_bytes())
        .map_err(|e| CtlError::Sign(e.to_string()))
}

/// The kid of an anchor certificate (DER) in CTL updates: SHA-256 of its
/// `SubjectPublicKeyInfo` DER, as the certificate holds it. `Anchor` if it is not a
/// certificate.
pub fn anchor_key_id(cert: &[u8]) -> Result<[u8; 32], CtlError> {
    spki_of(cert).map(spki_key_id)
}

/// The kid and P-256 key of an anchor certificate.
fn anchor_key(cert: &[u8]) -> Result<([u8; 32], VerifyingKey), CtlError> {
    let spki = spki_of(cert)?;
    let key = VerifyingKey::from_public_key_der(spki)
        .map_err(|e| CtlError::Anchor(format!("anchor key is not P-256: {e}")))?;
    Ok((spki_key_id(spki), key))
}

fn spki_of(cert: &[u8]) -> Result<&[u8], CtlError> {
    let (rest, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| CtlError::Anchor(format!("anchor is not an X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(CtlError::Anchor(
            "trailing bytes after the anchor certificate".into(),
        ));
    }
    Ok(parsed.tbs_certificate.subject_pki.raw)
}

fn update_error(e: CoseError) -> CtlError {
    match e {
        CoseError::BadSignature => CtlError::Signature,
        other => CtlError::Malformed(format!("CTL update: {other}")),
    }
}

fn check_anchors(anchors: &[Vec<u8>]) -> Result<(), CtlError> {
    if anchors.is_empty() || anchors.len() > MAX_ANCHORS {
        return Err(CtlError::Limit(format!(
            "CTL has {} anchors, not 1..={MAX_ANCHORS}",
            anchors.len()
        )));
    }
    if let Some(anchor) = anchors
        .iter()
        .find(|anchor| anchor.is_empty() || anchor.len() > MAX_ANCHOR_LEN)
    {
        return Err(CtlError::Limit(format!(
            "CTL anchor of {} bytes, not 1..={MAX_ANCHOR_LEN}",
            anchor.len()
        )));
    }
    Ok(())
}
