//! # steward-pki
//!
//! The PKI of Steward, without I/O: the certificate authority, the enrolment policy
//! (manufacturer CAs and the allow-list), EST-coaps request handling, CRLs and OCSP; and
//! COSE_Sign1 with ES256 ([`cose`]), shared by the server and the simulated device.

pub mod ca;
pub mod cose;
pub mod csr;
pub mod ctl;
pub mod est;
pub mod multipart;
pub mod ossl;
pub mod pkcs7;
pub mod policy;
pub mod profile;
pub mod records;
pub mod recovery;
pub mod revocation;
