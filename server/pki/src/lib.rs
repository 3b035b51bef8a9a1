//! # steward-pki
//!
//! The PKI of Steward, without I/O: the certificate authority, the enrolment policy
//! (manufacturer CAs and the allow-list), EST-coaps request handling, CRLs and OCSP.
