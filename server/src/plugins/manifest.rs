//! Optional signed plugin manifests.
//!
//! A plugin `X.wasm` may have `X.wasm.manifest` next to it: a tagged COSE_Sign1 (ES256, see
//! [`steward_pki::cose`]) whose kid names the signer and whose payload is a CBOR map with text
//! keys:
//!
//! ```cddl
//! manifest = {
//!   "name": tstr,        ; the name the component's describe() must report
//!   "sha256": bstr .size 32, ; SHA-256 of the .wasm file's bytes
//!   ? "version": tstr,
//!   * tstr => any        ; ignored
//! }
//! ```
//!
//! Trusted signers are public keys in `<plugins_dir>/signers/<signer>.pem` (SPKI, or a private
//! key whose public half is used); the signer name follows the key name rule
//! `[a-z0-9_-]{1,64}`. [`verify_manifest`] checks the signature with the signer the kid names
//! (a signer without a file is refused), then the digest; the caller compares
//! [`Manifest::name`] with what the component's describe() reports.
//!
//! Map keys other than text are skipped like unknown text keys; a repeated known key, an
//! indefinite-length map and trailing bytes are malformed.

use crate::hex::encode as hex;
use std::path::Path;

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};
use sha2::{Digest, Sha256};

use steward_pki::cose::{
    CoseError, MAX_MESSAGE_LEN, cose_sign1_es256, cose_sign1_kid, cose_verify1_es256,
    load_signing_key, load_verifying_key,
};

use super::keys::is_valid_name;

/// A verified manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The plugin name the component's describe() must report.
    pub name: String,
    /// SHA-256 of the component's bytes (equal to them once verified).
    pub sha256: [u8; 32],
    pub version: Option<String>,
    /// The signer (the kid), whose key is `<signers_dir>/<signer>.pem`.
    pub signer: String,
}

/// Why a manifest was not accepted, or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not a COSE_Sign1 with ES256, a bad kid, or a payload not of the manifest's shape.
    #[error("malformed manifest: {0}")]
    Malformed(String),
    /// The kid names a signer with no key file.
    #[error("manifest signed by unknown signer '{signer}' (no {path})")]
    UnknownSigner { signer: String, path: String },
    /// The signer's key file is unreadable or not a P-256 key.
    #[error("signer '{signer}': {reason}")]
    SignerKey { signer: String, reason: String },
    /// The signature does not verify with the named signer's key.
    #[error("bad signature (manifest names signer '{signer}')")]
    BadSignature { signer: String },
    /// The manifest pins other component bytes.
    #[error(
        "digest mismatch: manifest pins {}, component is {}",
        hex(.pinned),
        hex(.actual)
    )]
    DigestMismatch { pinned: [u8; 32], actual: [u8; 32] },
    /// [`sign_manifest`]: a bad signer name or signing key.
    #[error("cannot sign manifest: {0}")]
    Sign(String),
}

/// Builds the manifest of `component` and signs it with `key_pem` (a P-256 private key) as
/// `signer` (the kid; verifiers look for `signers/<signer>.pem`).
pub fn sign_manifest(
    component: &[u8],
    name: &str,
    version: Option<&str>,
    signer: &str,
    key_pem: &str,
) -> Result<Vec<u8>, ManifestError> {
    if !is_valid_name(signer) {
        return Err(ManifestError::Sign(format!(
            "signer name {signer:?} is not allowed (want [a-z0-9_-]{{1,64}})"
        )));
    }
    let signing_key = load_signing_key(key_pem).map_err(|e| ManifestError::Sign(e.to_string()))?;
    let payload = encode_payload(name, &sha256(component), version)?;
    cose_sign1_es256(&signing_key, signer.as_bytes(), &payload)
        .map_err(|e| ManifestError::Sign(e.to_string()))
}

/// Verifies `manifest` (the bytes of `X.wasm.manifest`) with the signer its kid names in
/// `signers_dir`, and that it pins `component`'s SHA-256. Returns the manifest; the caller
/// compares `name` with describe().
pub fn verify_manifest(
    manifest: &[u8],
    component: &[u8],
    signers_dir: &Path,
) -> Result<Manifest, ManifestError> {
    if manifest.len() > MAX_MESSAGE_LEN {
        return Err(ManifestError::Malformed(format!(
            "{} bytes, over the {MAX_MESSAGE_LEN}-byte limit",
            manifest.len()
        )));
    }
    let kid = cose_sign1_kid(manifest).map_err(malformed)?;
    let signer = match std::str::from_utf8(&kid) {
        Ok(signer) if is_valid_name(signer) => signer.to_owned(),
        _ => {
            return Err(ManifestError::Malformed(format!(
                "kid {} is not a signer name ([a-z0-9_-]{{1,64}})",
                if kid.is_empty() {
                    "(none)".to_owned()
                } else {
                    format!("h'{}'", hex(&kid))
                }
            )));
        }
    };
    let path = signers_dir.join(format!("{signer}.pem"));
    let pem = match std::fs::read_to_string(&path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ManifestError::UnknownSigner {
                signer,
                path: path.display().to_string(),
            });
        }
        Err(e) => {
            return Err(ManifestError::SignerKey {
                signer,
                reason: format!("{}: {e}", path.display()),
            });
        }
    };
    let verifying_key = load_verifying_key(&pem).map_err(|e| ManifestError::SignerKey {
        signer: signer.clone(),
        reason: format!("{}: {e}", path.display()),
    })?;
    let (payload, _kid) = cose_verify1_es256(&verifying_key, manifest).map_err(|e| match e {
        CoseError::BadSignature => ManifestError::BadSignature {
            signer: signer.clone(),
        },
        other => malformed(other),
    })?;
    let (name, pinned, version) = decode_payload(&payload)?;
    let actual = sha256(component);
    if pinned != actual {
        return Err(ManifestError::DigestMismatch { pinned, actual });
    }
    Ok(Manifest {
        name,
        sha256: pinned,
        version,
        signer,
    })
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn malformed(e: CoseError) -> ManifestError {
    ManifestError::Malformed(match e {
        CoseError::Invalid(why) | CoseError::Key(why) | CoseError::Sign(why) => why,
        CoseError::BadSignature => "bad signature".into(),
    })
}

fn encode_payload(
    name: &str,
    digest: &[u8; 32],
    version: Option<&str>,
) -> Result<Vec<u8>, ManifestError> {
    let encode = || -> Result<Vec<u8>, minicbor::encode::Error<std::convert::Infallible>> {
        let mut e = Encoder::new(Vec::new());
        e.map(if version.is_some() { 3 } else { 2 })?;
        e.str("name")?.str(name)?;
        e.str("sha256")?.bytes(digest)?;
        if let Some(version) = version {
            e.str("version")?.str(version)?;
        }
        Ok(e.into_writer())
    };
    encode().map_err(|e| ManifestError::Sign(format!("encoding the manifest: {e}")))
}

/// (name, sha256, version) from the payload map.
fn decode_payload(payload: &[u8]) -> Result<(String, [u8; 32], Option<String>), ManifestError> {
    let bad = |what: String| ManifestError::Malformed(what);
    let cbor = |e: minicbor::decode::Error| ManifestError::Malformed(format!("payload: {e}"));
    let mut d = Decoder::new(payload);
    let entries = d
        .map()
        .map_err(cbor)?
        .ok_or_else(|| bad("payload is an indefinite-length map".into()))?;
    let (mut name, mut digest, mut version) = (None, None, None);
    for _ in 0..entries {
        let key = match d.datatype().map_err(cbor)? {
            Type::String => Some(d.str().map_err(cbor)?),
            _ => {
                d.skip().map_err(cbor)?;
                None
            }
        };
        match key {
            Some(key @ ("name" | "version")) => {
                let value = d
                    .str()
                    .map_err(|e| bad(format!("\"{key}\" is not a text string: {e}")))?
                    .to_owned();
                let slot = if key == "name" {
                    &mut name
                } else {
                    &mut version
                };
                if slot.replace(value).is_some() {
                    return Err(bad(format!("\"{key}\" appears twice")));
                }
            }
            Some("sha256") => {
                let bytes = d
                    .bytes()
                    .map_err(|e| bad(format!("\"sha256\" is not a byte string: {e}")))?;
                let bytes: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| bad(format!("\"sha256\" is {} bytes, not 32", bytes.len())))?;
                if digest.replace(bytes).is_some() {
                    return Err(bad("\"sha256\" appears twice".into()));
                }
            }
            _ => d.skip().map_err(cbor)?,
        }
    }
    if d.position() != payload.len() {
        return Err(bad("trailing bytes after the payload map".into()));
    }
    let name = name.ok_or_else(|| bad("no \"name\"".into()))?;
    let digest = digest.ok_or_else(|| bad("no \"sha256\"".into()))?;
    Ok((name, digest, version))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;

    /// (private SEC1 PEM, public SPKI PEM).
    fn generate() -> (String, String) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        (
            String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap(),
            String::from_utf8(ec.public_key_to_pem().unwrap()).unwrap(),
        )
    }

    fn signers(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (signer, pem) in files {
            std::fs::write(dir.path().join(format!("{signer}.pem")), pem).unwrap();
        }
        dir
    }

    const COMPONENT: &[u8] = b"\0asm not really a component";

    #[test]
    fn sign_then_verify() {
        let (private, public) = generate();
        let dir = signers(&[("acme", &public)]);
        let manifest =
            sign_manifest(COMPONENT, "recovery", Some("1.2.0"), "acme", &private).unwrap();
        let verified = verify_manifest(&manifest, COMPONENT, dir.path()).unwrap();
        assert_eq!(
            verified,
            Manifest {
                name: "recovery".into(),
                sha256: sha256(COMPONENT),
                version: Some("1.2.0".into()),
                signer: "acme".into(),
            }
        );
        // Without a version, and with a private key as the signer file.
        let dir = signers(&[("acme", &private)]);
        let manifest = sign_manifest(COMPONENT, "Ünïcode name", None, "acme", &private).unwrap();
        let verified = verify_manifest(&manifest, COMPONENT, dir.path()).unwrap();
        assert_eq!(verified.name, "Ünïcode name");
        assert_eq!(verified.version, None);
    }

    #[test]
    fn sha256_is_sha256() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn digest_mismatch() {
        let (private, public) = generate();
        let dir = signers(&[("acme", &public)]);
        let manifest = sign_manifest(COMPONENT, "p", None, "acme", &private).unwrap();
        let err = verify_manifest(&manifest, b"other bytes", dir.path()).unwrap_err();
        assert!(matches!(err, ManifestError::DigestMismatch { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("digest mismatch: manifest pins "),
            "{text}"
        );
        assert!(text.contains(&hex(&sha256(COMPONENT))), "{text}");
        assert!(text.contains(&hex(&sha256(b"other bytes"))), "{text}");
    }

    #[test]
    fn unknown_signer() {
        let (private, public) = generate();
        let dir = signers(&[("acme", &public)]);
        let manifest = sign_manifest(COMPONENT, "p", None, "mallory", &private).unwrap();
        let err = verify_manifest(&manifest, COMPONENT, dir.path()).unwrap_err();
        assert!(
            matches!(err, ManifestError::UnknownSigner { ref signer, .. } if signer == "mallory")
        );
        let text = err.to_string();
        assert!(
            text.starts_with("manifest signed by unknown signer 'mallory' (no "),
            "{text}"
        );
        assert!(text.ends_with("mallory.pem)"), "{text}");
    }

    #[test]
    fn signer_file_with_another_key_is_a_bad_signature() {
        let (private, _) = generate();
        let (_, other_public) = generate();
        let dir = signers(&[("acme", &other_public)]);
        let manifest = sign_manifest(COMPONENT, "p", None, "acme", &private).unwrap();
        let err = verify_manifest(&manifest, COMPONENT, dir.path()).unwrap_err();
        assert!(matches!(err, ManifestError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn bad_signer_files_and_names() {
        let (private, _) = generate();
        let dir = signers(&[("junk", "not a pem")]);
        let manifest = sign_manifest(COMPONENT, "p", None, "junk", &private).unwrap();
        let err = verify_manifest(&manifest, COMPONENT, dir.path()).unwrap_err();
        assert!(matches!(err, ManifestError::SignerKey { .. }), "{err}");

        assert!(matches!(
            sign_manifest(COMPONENT, "p", None, "../up", &private),
            Err(ManifestError::Sign(_))
        ));
        // A kid that is not a signer name, made without sign_manifest's check.
        let key = load_signing_key(&private).unwrap();
        let payload = encode_payload("p", &sha256(COMPONENT), None).unwrap();
        for kid in [&b"../acme"[..], b"", b"\xff"] {
            let message = cose_sign1_es256(&key, kid, &payload).unwrap();
            let err = verify_manifest(&message, COMPONENT, dir.path()).unwrap_err();
            assert!(matches!(err, ManifestError::Malformed(_)), "{kid:?}: {err}");
        }
    }

    #[test]
    fn malformed_payloads() {
        let (private, public) = generate();
        let dir = signers(&[("acme", &public)]);
        let key = load_signing_key(&private).unwrap();
        let digest = sha256(COMPONENT);
        let verify = |payload: Vec<u8>| {
            let message = cose_sign1_es256(&key, b"acme", &payload).unwrap();
            verify_manifest(&message, COMPONENT, dir.path())
        };
        let build = |f: &dyn Fn(&mut Encoder<Vec<u8>>)| {
            let mut e = Encoder::new(Vec::new());
            f(&mut e);
            e.into_writer()
        };

        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "missing sha256",
                build(&|e| {
                    e.map(1).unwrap().str("name").unwrap().str("p").unwrap();
                }),
            ),
            (
                "missing name",
                build(&|e| {
                    e.map(1)
                        .unwrap()
                        .str("sha256")
                        .unwrap()
                        .bytes(&digest)
                        .unwrap();
                }),
            ),
            (
                "sha256 as text",
                build(&|e| {
                    e.map(2).unwrap();
                    e.str("name").unwrap().str("p").unwrap();
                    e.str("sha256").unwrap().str("abc").unwrap();
                }),
            ),
            (
                "short sha256",
                build(&|e| {
                    e.map(2).unwrap();
                    e.str("name").unwrap().str("p").unwrap();
                    e.str("sha256").unwrap().bytes(&digest[..31]).unwrap();
                }),
            ),
            (
                "name as bytes",
                build(&|e| {
                    e.map(2).unwrap();
                    e.str("name").unwrap().bytes(b"p").unwrap();
                    e.str("sha256").unwrap().bytes(&digest).unwrap();
                }),
            ),
            (
                "name twice",
                build(&|e| {
                    e.map(3).unwrap();
                    e.str("name").unwrap().str("p").unwrap();
                    e.str("name").unwrap().str("q").unwrap();
                    e.str("sha256").unwrap().bytes(&digest).unwrap();
                }),
            ),
            (
                "not a map",
                build(&|e| {
                    e.array(0).unwrap();
                }),
            ),
            (
                "indefinite map",
                build(&|e| {
                    e.begin_map().unwrap();
                    e.str("name").unwrap().str("p").unwrap();
                    e.str("sha256").unwrap().bytes(&digest).unwrap();
                    e.end().unwrap();
                }),
            ),
            (
                "trailing bytes",
                build(&|e| {
                    e.map(2).unwrap();
                    e.str("name").unwrap().str("p").unwrap();
                    e.str("sha256").unwrap().bytes(&digest).unwrap();
                    e.u8(0).unwrap();
                }),
            ),
            ("empty", Vec::new()),
        ];
        for (what, payload) in cases {
            let err = verify(payload).unwrap_err();
            assert!(matches!(err, ManifestError::Malformed(_)), "{what}: {err}");
            assert!(
                err.to_string().starts_with("malformed manifest: "),
                "{what}: {err}"
            );
        }

        // Unknown keys, text or not, are ignored.
        let extended = build(&|e| {
            e.map(5).unwrap();
            e.str("future").unwrap().array(1).unwrap().u32(7).unwrap();
            e.str("name").unwrap().str("p").unwrap();
            e.u8(1).unwrap().str("numeric key").unwrap();
            e.str("sha256").unwrap().bytes(&digest).unwrap();
            e.str("version").unwrap().str("0.1").unwrap();
        });
        let manifest = verify(extended).unwrap();
        assert_eq!(
            (manifest.name.as_str(), manifest.version.as_deref()),
            ("p", Some("0.1"))
        );
    }

    #[test]
    fn not_cose_is_malformed() {
        let dir = signers(&[]);
        for bytes in [&b""[..], b"garbage", &[0xd2, 0x84]] {
            let err = verify_manifest(bytes, COMPONENT, dir.path()).unwrap_err();
            assert!(matches!(err, ManifestError::Malformed(_)), "{err}");
        }
        let big = vec![0; MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            verify_manifest(&big, COMPONENT, dir.path()),
            Err(ManifestError::Malformed(_))
        ));
    }

    #[test]
    fn payload_is_the_documented_map() {
        let payload = encode_payload("p", &[7; 32], Some("1")).unwrap();
        let mut expected = vec![0xa3, 0x64];
        expected.extend(b"name");
        expected.extend([0x61, b'p', 0x66]);
        expected.extend(b"sha256");
        expected.extend([0x58, 32]);
        expected.extend([7; 32]);
        expected.push(0x67);
        expected.extend(b"version");
        expected.extend([0x61, b'1']);
        assert_eq!(payload, expected);
    }
}
