//! EST discovery links (RFC 9148 §4.1), parsed back with steward-objects' RFC 6690 parser.
#![allow(clippy::unwrap_used)]

use steward_objects::link::{self, Link};
use steward_pki::est::{EstConfig, discovery, discovery_payload};

fn all() -> EstConfig {
    EstConfig {
        server_keygen: true,
        ..EstConfig::default()
    }
}

fn q(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn targets(config: &EstConfig, query: &[&str]) -> Vec<String> {
    let payload = discovery_payload(config, &q(query));
    link::parse(payload.as_bytes())
        .unwrap()
        .into_iter()
        .map(|l| l.target)
        .collect()
}

#[test]
fn links_match_rfc_9148_section_4_1() {
    assert_eq!(
        discovery(&all(), &q(&["rt=ace.est*"])),
        [
            r#"</.well-known/est/crts>;rt="ace.est.crts";ct="281 287""#,
            r#"</.well-known/est/sen>;rt="ace.est.sen";ct="281 287""#,
            r#"</.well-known/est/sren>;rt="ace.est.sren";ct="281 287""#,
            r#"</.well-known/est/att>;rt="ace.est.att";ct=285"#,
            r#"</.well-known/est/skg>;rt="ace.est.skg";ct=62"#,
            r#"</.well-known/est/skc>;rt="ace.est.skc";ct=62"#,
        ]
    );
}

#[test]
fn links_parse_back() {
    let payload = discovery_payload(&all(), &[]);
    let links: Vec<Link> = link::parse(payload.as_bytes()).unwrap();
    assert_eq!(links.len(), 6);
    for l in &links {
        let short = l.target.strip_prefix("/.well-known/est/").unwrap();
        assert_eq!(l.param_str("rt"), Some(format!("ace.est.{short}").as_str()));
        let ct: Vec<u16> = l
            .param_str("ct")
            .unwrap()
            .split(' ')
            .map(|c| c.parse().unwrap())
            .collect();
        let expected: &[u16] = match short {
            "crts" | "sen" | "sren" => &[281, 287],
            "att" => &[285],
            "skg" | "skc" => &[62],
            other => panic!("unexpected link {other}"),
        };
        assert_eq!(ct, expected);
    }
}

#[test]
fn default_config_lists_what_it_serves() {
    assert_eq!(
        targets(&EstConfig::default(), &[]),
        [
            "/.well-known/est/crts",
            "/.well-known/est/sen",
            "/.well-known/est/sren",
            "/.well-known/est/att",
        ]
    );
    let minimal = EstConfig {
        csr_attrs: false,
        ..EstConfig::default()
    };
    // RFC 9148 §4.1: crts, sen and sren MUST be returned.
    assert_eq!(
        targets(&minimal, &["rt=ace.est*"]),
        [
            "/.well-known/est/crts",
            "/.well-known/est/sen",
            "/.well-known/est/sren",
        ]
    );
}

#[test]
fn filters() {
    let c = all();
    assert_eq!(targets(&c, &["rt=ace.est.sen"]), ["/.well-known/est/sen"]);
    assert_eq!(
        targets(&c, &["rt=\"ace.est.sen\""]),
        ["/.well-known/est/sen"]
    );
    assert_eq!(
        targets(&c, &["rt=ace.est.s*"]),
        [
            "/.well-known/est/sen",
            "/.well-known/est/sren",
            "/.well-known/est/skg",
            "/.well-known/est/skc",
        ]
    );
    assert_eq!(targets(&c, &["rt=*"]).len(), 6);
    assert!(targets(&c, &["rt=core.rd"]).is_empty());
    assert!(
        targets(&c, &["rt=ace.est"]).is_empty(),
        "no prefix match without *"
    );
    assert_eq!(
        targets(&c, &["ct=287"]),
        [
            "/.well-known/est/crts",
            "/.well-known/est/sen",
            "/.well-known/est/sren",
        ]
    );
    assert_eq!(
        targets(&c, &["ct=62"]),
        ["/.well-known/est/skg", "/.well-known/est/skc"]
    );
    assert_eq!(
        targets(&c, &["href=/.well-known/est/crts"]),
        ["/.well-known/est/crts"]
    );
    assert_eq!(targets(&c, &["href=/.well-known/est/*"]).len(), 6);
    assert_eq!(
        targets(&c, &["rt=ace.est*", "ct=285"]),
        ["/.well-known/est/att"]
    );
    assert!(targets(&c, &["if=core.b"]).is_empty(), "unknown attribute");
    assert_eq!(targets(&c, &["rt"]).len(), 6, "presence test");
    assert!(targets(&c, &["obs"]).is_empty());
    assert!(discovery_payload(&c, &q(&["rt=x"])).is_empty());
}
