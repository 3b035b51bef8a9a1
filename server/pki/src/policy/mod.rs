//! Enrolment policy: who may ask for a certificate (seed 003's validation scheme).
//!
//! - [`FactoryPolicy`]: a device presenting a factory certificate may enrol if the certificate
//!   chains to a configured manufacturer CA ([`ManufacturerCas`]) and its device ID is on the
//!   allow-list ([`AllowList`], or the store through [`AllowListLookup`]). The operational
//!   certificate it then receives replaces the factory one: factory credentials may have been
//!   copied during manufacturing, so they are used once, to get something only the device holds.
//! - [`PskBinding`]: a device authenticated with a bootstrap PSK may enrol only the common name
//!   bound to its PSK identity.

mod allow_list;
mod factory;
mod manufacturer;
mod psk;

pub use allow_list::{
    AllowList, AllowListError, AllowListLookup, MAX_DEVICE_ID_LEN, validate_device_id,
};
pub use factory::{
    DeviceIdSource, FactoryDevice, FactoryPolicy, MAX_CHAIN_LEN, PolicyError, Refusal, device_id,
};
pub use manufacturer::{ManufacturerCa, ManufacturerCas, ManufacturerError};
pub use psk::{PskBinding, PskRefusal, check_subject};

use openssl::x509::X509Ref;

/// Whether a DER certificate has basicConstraints CA:TRUE. Unparsable counts as "no".
fn is_ca_cert(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, c)| c.basic_constraints().ok().flatten().map(|bc| bc.value.ca))
        .unwrap_or(false)
}

/// A one-line subject for error messages.
fn subject_summary(cert: &X509Ref) -> String {
    cert.subject_name()
        .entries()
        .filter_map(|e| {
            let key = e.object().nid().short_name().ok()?;
            let value = e.data().to_string().ok()?;
            Some(format!("{key}={value}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
