//! OpenSSL reports a signature that does not verify by returning 0 and leaving entries in
//! its thread-local error queue; the `openssl` crate turns the 0 into `Ok(false)` and leaves
//! the queue as it is. The next call on the thread that fails for another reason then reports
//! those stale entries too, in another client's error message and audit line (found by the
//! `est_request` fuzz target). Every "does this verify?" check goes through [`verified`].

use openssl::error::ErrorStack;

/// True if the check succeeded; otherwise false, with the thread's error queue emptied.
pub fn verified(check: Result<bool, ErrorStack>) -> bool {
    match check {
        Ok(true) => true,
        _ => {
            // Reading the queue empties it.
            let _ = ErrorStack::get();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::X509Req;

    #[test]
    fn a_failed_check_leaves_no_errors_behind() {
        let group =
            EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap_or_else(|e| panic!("{e}"));
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut builder = X509Req::builder().unwrap_or_else(|e| panic!("{e}"));
        builder.set_pubkey(&key).unwrap_or_else(|e| panic!("{e}"));
        builder
            .sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut der = builder.build().to_der().unwrap_or_else(|e| panic!("{e}"));
        // Flip a bit of the signature (the last byte of the DER).
        let last = der.len() - 1;
        der[last] ^= 1;
        let req = X509Req::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
        assert!(!verified(req.verify(&key)));
        assert!(ErrorStack::get().errors().is_empty());
    }
}
