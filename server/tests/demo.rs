//! `steward demo` in-process on free ports: every step passes and the summary lists each one,
//! including the Security Mode 4 device's way from factory certificate to registration, the
//! example WASM plugin managing `demo-plugin`, and trust-chain recovery of 100 devices from a
//! lost server A to B (the components must be built: `scripts/build-plugins`, which
//! `scripts/test` runs first).

use steward::demo::{self, DemoOptions, STEPS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes_every_step() {
    let options = DemoOptions {
        coap_port: 0,
        coaps_port: 0,
        ..DemoOptions::default()
    };
    let mut out: Vec<u8> = Vec::new();
    let summary = demo::run(&options, &mut out)
        .await
        .unwrap_or_else(|e| panic!("the demo could not run: {e}"));
    let text = String::from_utf8_lossy(&out);
    assert!(summary.passed(), "{text}");
    assert_eq!(summary.failures(), 0, "{text}");
    let names: Vec<&str> = summary.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, STEPS, "{text}");

    let (_, tail) = text
        .split_once("Summary:")
        .unwrap_or_else(|| panic!("no summary in {text}"));
    assert!(
        tail.contains(&format!("{}/{} steps passed", STEPS.len(), STEPS.len())),
        "{text}"
    );
    for step in STEPS {
        assert!(
            tail.contains(&format!("✓ {step}")),
            "{step} missing from the summary:\n{text}"
        );
    }
    for operation in [
        "Register",
        "Read",
        "Write",
        "Execute",
        "Observe",
        "De-register",
    ] {
        assert!(
            summary.percentile(operation, 50).is_some(),
            "no {operation} latency"
        );
        assert!(
            tail.contains(operation),
            "{operation} missing from the latency table"
        );
    }
    assert!(text.contains("delayed until wake-up"), "{text}");
    // Security Mode 4 (issue 5): factory certificate → bootstrap → EST → OCSP → registered with
    // the operational certificate, then stopped cleanly.
    for line in [
        "demo-est (LwM2M 1.1): factory certificate → bootstrap → EST → registered",
        "EST enrolment: operational certificate serial",
        "OCSP check of the LwM2M server's certificate (bootstrap server's responder): good",
        "registered over DTLS with the operational certificate (server sees X.509 CN=demo-est)",
        "stopped: deregistered",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    assert!(
        summary.percentile("Mode 4 enrolment", 50).is_some(),
        "no Mode 4 enrolment latency"
    );
    // The example plugin: loaded from the data directory, it labels the device that lists
    // its object, reads the manufacturer, and is notified when the counter changes.
    let plugin_line = text
        .lines()
        .find(|l| l.contains("plugin example 0.1.0 labelled demo-plugin"))
        .unwrap_or_else(|| panic!("no plugin line:\n{text}"));
    for part in [
        r#"("managed by example")"#,
        "read its manufacturer \"",
        "got notification counter=7",
        "deregistered",
    ] {
        assert!(
            plugin_line.contains(part),
            "{part:?} missing: {plugin_line}"
        );
    }
    for operation in ["Plugin label", "Plugin notify"] {
        assert!(
            summary.percentile(operation, 50).is_some(),
            "no {operation} latency"
        );
    }
    // Trust-chain recovery (issue 8): its own servers A and B and 100 devices; one vendor
    // token imported into B brings every device back.
    let n = options.recovery.devices;
    for line in [
        format!(
            "{n} devices with factory certificates bootstrapped (Security Mode 4, EST), locked in to A's CTL"
        ),
        "server A stopped and its data directory destroyed".to_owned(),
        format!("{n}/{n} in recovery mode after"),
        ", 0 registered with B".to_owned(),
        "audited as issued to alice (api, record 1)".to_owned(),
        format!("token accepted by {n} devices, refused by 0; {n} report having recovered"),
        format!("{n}/{n} recovered and registered with B in "),
    ] {
        assert!(text.contains(&line), "{line:?} missing:\n{text}");
    }
    assert!(
        summary.percentile("Fleet recovery", 50).is_some(),
        "no fleet recovery time"
    );
    assert!(tail.contains("demo passed"), "{text}");
}
