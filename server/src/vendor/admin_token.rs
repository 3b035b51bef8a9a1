//! Administrators' bearer tokens: 32 random bytes in hex, shown once when the administrator is
//! added. The service keeps only their SHA-256, so a copy of the database does not let anyone
//! sign; a lost token is replaced by removing and re-adding the administrator.

use sha2::{Digest, Sha256};

/// The length of a token in bytes (its hex form is twice as long).
pub const TOKEN_BYTES: usize = 32;

/// A freshly generated token. `Debug` does not show it.
pub struct AdminToken(String);

impl AdminToken {
    /// 32 bytes from OpenSSL's CSPRNG (the same source as the CA's serial numbers).
    pub fn generate() -> Result<AdminToken, openssl::error::ErrorStack> {
        let mut bytes = [0u8; TOKEN_BYTES];
        openssl::rand::rand_bytes(&mut bytes)?;
        Ok(AdminToken(super::request::hex(&bytes)))
    }

    /// The token, to show the administrator once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database keeps.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.0)
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The SHA-256 of a presented token, compared with the stored ones by [`same_digest`].
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two digests without stopping at the first difference, so that the time taken does
/// not tell how much of a guess was right.
pub fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive,
/// RFC 7235 §2.1); `None` for any other form.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let a = AdminToken::generate().unwrap();
        let b = AdminToken::generate().unwrap();
        assert_eq!(a.expose().len(), 2 * TOKEN_BYTES);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
        assert!(same_digest(&a.digest(), &digest(a.expose())));
        assert!(!same_digest(&a.digest(), &b.digest()));
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer(""), None);
    }
}
