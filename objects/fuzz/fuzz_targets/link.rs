//! Link format: generic RFC 6690, Register payloads, Discover answers (plain and under an
//! alternate path) and Write-Attributes queries. Whatever parses must format to text that
//! parses back to the same value.
#![no_main]

use steward_objects::link::{self, DiscoverAnswer, NotificationAttributes, ObjectLinks};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(links) = link::parse(data) {
        let text = link::format(&links);
        assert_eq!(link::parse(text.as_bytes()), Ok(links), "generic: {text}");
    }
    if let Ok(reg) = ObjectLinks::parse(data) {
        let text = reg.to_string();
        assert_eq!(
            ObjectLinks::parse(text.as_bytes()),
            Ok(reg),
            "register: {text}"
        );
    }
    for prefix in ["/", "/lwm2m"] {
        if let Ok(answer) = DiscoverAnswer::parse_under(data, prefix) {
            let text = answer.to_string();
            let again = DiscoverAnswer::parse_under(text.as_bytes(), prefix);
            assert_eq!(again, Ok(answer), "discover under {prefix}: {text}");
        }
    }
    if let Ok(query) = std::str::from_utf8(data) {
        let items: Vec<&str> = query.split('&').collect();
        if let Ok(attrs) = NotificationAttributes::from_query(&items) {
            let _ = attrs.validate_strict();
            let _ = attrs.check_level(&steward_objects::path::Path::Instance(3, 0));
            let again = NotificationAttributes::from_query(&attrs.to_query());
            assert_eq!(again, Ok(attrs), "query: {query}");
        }
    }
});
