//! Certificate serial numbers.
//!
//! RFC 5280 §4.1.2.2: a serial is a positive integer of at most 20 octets, unique per issuer.
//! We issue 16 random bytes with the top bit cleared, so every serial is positive and at least
//! 64 bits of it are unpredictable (CA/Browser Forum baseline; it defeats chosen-prefix collision
//! attacks on the signature). A [`Serial`] also has to hold serials that other issuers chose (a
//! presented factory certificate, an OCSP request), so it accepts any positive value of 1..=20
//! octets.

use std::fmt;
use std::str::FromStr;

use openssl::asn1::{Asn1Integer, Asn1IntegerRef};
use openssl::bn::BigNum;
use openssl::error::ErrorStack;

/// Length of the serials this CA issues.
pub const RANDOM_SERIAL_LEN: usize = 16;
/// RFC 5280 §4.1.2.2 upper bound.
pub const MAX_SERIAL_LEN: usize = 20;

/// A positive certificate serial number: big-endian magnitude without leading zero bytes.
///
/// Displayed and parsed as lowercase hex (parsing also accepts uppercase and `:` separators, as
/// `openssl x509 -serial` and browsers print them).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

/// Why bytes or text are not a [`Serial`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    #[error("serial number is zero or empty")]
    Zero,
    #[error("serial number is negative")]
    Negative,
    #[error("serial number has {0} octets, more than the 20 RFC 5280 allows")]
    TooLong(usize),
    #[error("serial number is not hex: {0:?}")]
    NotHex(String),
}

impl Serial {
    /// A fresh random serial from OpenSSL's CSPRNG. Fails only if the RNG cannot be seeded.
    pub fn random() -> Result<Serial, ErrorStack> {
        loop {
            let mut bytes = [0u8; RANDOM_SERIAL_LEN];
            openssl::rand::rand_bytes(&mut bytes)?;
            // Clear the sign bit: DER INTEGERs are two's complement, and a serial must be positive.
            bytes[0] &= 0x7f;
            // All-zero has probability 2^-127; retrying keeps `Serial` free of the zero value.
            if let Ok(serial) = Serial::from_bytes(&bytes) {
                return Ok(serial);
            }
        }
    }

    /// A serial from its unsigned big-endian magnitude; leading zero bytes are dropped.
    pub fn from_bytes(bytes: &[u8]) -> Result<Serial, SerialError> {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let magnitude = &bytes[start..];
        if magnitude.is_empty() {
            return Err(SerialError::Zero);
        }
        if magnitude.len() > MAX_SERIAL_LEN {
            return Err(SerialError::TooLong(magnitude.len()));
        }
        Ok(Serial(magnitude.to_vec()))
    }

    /// The serial of an OpenSSL integer (e.g. `cert.serial_number()`).
    pub fn from_asn1(value: &Asn1IntegerRef) -> Result<Serial, SerialError> {
        let bn = value
            .to_bn()
            .map_err(|e| SerialError::NotHex(e.to_string()))?;
        if bn.is_negative() {
            return Err(SerialError::Negative);
        }
        Serial::from_bytes(&bn.to_vec())
    }

    /// The unsigned big-endian magnitude, without leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The serial as an OpenSSL ASN.1 integer, for certificate and CRL builders.
    pub fn to_asn1(&self) -> Result<Asn1Integer, ErrorStack> {
        BigNum::from_slice(&self.0)?.to_asn1_integer()
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl FromStr for Serial {
    type Err = SerialError;

    fn from_str(s: &str) -> Result<Serial, SerialError> {
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        let bad = || SerialError::NotHex(s.to_owned());
        if digits.is_empty() {
            return Err(bad());
        }
        // An odd count means an implied leading zero nibble ("abc" == 0x0abc).
        let mut padded = Vec::with_capacity(digits.len() + 1);
        if digits.len() % 2 == 1 {
            padded.push(b'0');
        }
        padded.extend_from_slice(&digits);
        let mut bytes = Vec::with_capacity(padded.len() / 2);
        for pair in padded.chunks(2) {
            let hi = hex_value(pair[0]).ok_or_else(bad)?;
            let lo = hex_value(pair[1]).ok_or_else(bad)?;
            bytes.push(hi << 4 | lo);
        }
        Serial::from_bytes(&bytes)
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

// Stored as a CBOR byte string; decoding re-validates so a damaged record cannot smuggle in a
// zero or over-long serial.
impl<C> minicbor::Encode<C> for Serial {
    fn encode<W: minicbor::encode::Write>(
        &self,
        e: &mut minicbor::Encoder<W>,
        _ctx: &mut C,
    ) -> Result<(), minicbor::encode::Error<W::Error>> {
        e.bytes(&self.0)?;
        Ok(())
    }
}

impl<'b, C> minicbor::Decode<'b, C> for Serial {
    fn decode(
        d: &mut minicbor::Decoder<'b>,
        _ctx: &mut C,
    ) -> Result<Self, minicbor::decode::Error> {
        let bytes = d.bytes()?;
        Serial::from_bytes(bytes).map_err(|e| minicbor::decode::Error::message(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn random_serials_are_positive_and_distinct() {
        let a = Serial::random().unwrap();
        let b = Serial::random().unwrap();
        assert_ne!(a, b);
        for s in [&a, &b] {
            assert!(s.as_bytes().len() <= RANDOM_SERIAL_LEN);
            assert!(s.as_bytes()[0] != 0);
            let asn1 = s.to_asn1().unwrap();
            assert!(!asn1.to_bn().unwrap().is_negative());
            assert_eq!(Serial::from_asn1(&asn1).unwrap(), *s);
        }
    }

    #[test]
    fn hex_round_trip_and_leniency() {
        let s: Serial = "00:0A:bc".parse().unwrap();
        assert_eq!(s.as_bytes(), &[0x0a, 0xbc]);
        assert_eq!(s.to_string(), "0abc");
        assert_eq!("abc".parse::<Serial>().unwrap(), s);
        assert_eq!("0".parse::<Serial>(), Err(SerialError::Zero));
        assert!(matches!(
            "xy".parse::<Serial>(),
            Err(SerialError::NotHex(_))
        ));
        assert!(matches!("".parse::<Serial>(), Err(SerialError::NotHex(_))));
        assert_eq!(Serial::from_bytes(&[1; 21]), Err(SerialError::TooLong(21)));
    }
}
