//! X.509 v1 device certificates (common on older factory-provisioned devices) carry no
//! extensions, so nothing limits their use: they are refused unless the policy pins them.

use std::sync::Arc;

use steward_dtls::{ChainVerifier, CredentialError, Identity, PinnedV1Policy, StrictPolicy};

fn der(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    pem::parse(text).expect("PEM").into_contents()
}

#[test]
fn v1_leaf_is_refused_unless_pinned() {
    let ca = der("v1-ca.pem");
    let device = der("v1-device.pem");

    let strict = ChainVerifier::new(vec![ca.clone()], Arc::new(StrictPolicy));
    assert!(matches!(
        strict.verify(std::slice::from_ref(&device)),
        Err(CredentialError::UnpinnedV1 { index: 0 })
    ));

    let pinned_other = ChainVerifier::new(
        vec![ca.clone()],
        Arc::new(PinnedV1Policy {
            pinned: vec![ca.clone()],
        }),
    );
    assert!(matches!(
        pinned_other.verify(std::slice::from_ref(&device)),
        Err(CredentialError::UnpinnedV1 { index: 0 })
    ));

    let pinned = ChainVerifier::new(
        vec![ca],
        Arc::new(PinnedV1Policy {
            pinned: vec![device.clone()],
        }),
    );
    match pinned.verify(&[device]) {
        Ok(Identity::X509 { common_name, .. }) => {
            assert_eq!(common_name.as_deref(), Some("urn:dev:v1"));
        }
        other => panic!("pinned v1 device certificate: {other:?}"),
    }
}

#[test]
fn pinned_v1_leaf_still_needs_a_trusted_issuer() {
    let device = der("v1-device.pem");
    // A trust anchor that did not issue the device certificate (the leaf itself).
    let unrelated_anchor = der("v1-device.pem");
    let verifier = ChainVerifier::new(
        vec![unrelated_anchor],
        Arc::new(PinnedV1Policy {
            pinned: vec![device.clone()],
        }),
    );
    assert!(matches!(
        verifier.verify(&[device]),
        Err(CredentialError::UnknownIssuer)
    ));
}
