//! The sandbox, through the real host and real components (built by scripts/build-plugins):
//! each hostile behaviour is contained with its own error, the host keeps serving the
//! plugins next to it, and what may not load is refused at load with the reason.

mod plugins;

use std::sync::Arc;
use std::time::Duration;

use steward::plugins::bindings::steward::plugin::types::{Command, Event};
use steward::plugins::host::{EventFailure, HostConfig, PluginHost};
use steward::plugins::sandbox::CallError;
use steward::store::SledStore;

fn host(data: &std::path::Path, names: &[&str], tweak: impl FnOnce(&mut HostConfig)) -> PluginHost {
    plugins::install(data, names);
    let store = Arc::new(SledStore::open(data.join("db")).expect("store"));
    let mut config = HostConfig::in_data_dir(data);
    config.limits.deadline = Duration::from_millis(200);
    config.limits.memory_bytes = 16 << 20;
    tweak(&mut config);
    PluginHost::new(config, Some(store), None).expect("host")
}

fn command(name: &str, argument: &str) -> Event {
    Event::Command(Command {
        name: name.into(),
        argument: argument.into(),
    })
}

fn call(
    host: &PluginHost,
    plugin: &str,
    event: &Event,
) -> Result<Option<serde_json::Value>, EventFailure> {
    let routing = host.routing();
    let p = routing.get(plugin).expect("plugin loaded");
    host.call(p, event).map(|planned| planned.reply)
}

#[test]
fn hostile_behaviour_is_contained_and_the_neighbours_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(dir.path(), &["example", "hostile"], |c| {
        c.max_failures = 100
    });
    let report = host.load();
    assert_eq!(report.loaded, ["example", "hostile"], "{report:?}");

    let ok = call(&host, "hostile", &command("ok", "null")).expect("ok");
    assert_eq!(ok, Some(serde_json::json!({"ok": true})));

    type Expected = fn(&EventFailure) -> bool;
    let cases: [(&str, Expected); 4] = [
        ("loop", |e| {
            matches!(
                e,
                EventFailure::Sandbox {
                    error: CallError::Deadline(_),
                    ..
                }
            )
        }),
        ("host-spin", |e| {
            matches!(
                e,
                EventFailure::Sandbox {
                    error: CallError::Deadline(_),
                    ..
                }
            )
        }),
        ("bomb", |e| {
            matches!(
                e,
                EventFailure::Sandbox {
                    error: CallError::Memory(_),
                    ..
                }
            )
        }),
        ("trap", |e| {
            matches!(
                e,
                EventFailure::Sandbox {
                    error: CallError::Trap(_),
                    ..
                }
            )
        }),
    ];
    for (name, expected) in cases {
        let err = call(&host, "hostile", &command(name, "null")).expect_err(name);
        assert!(expected(&err), "{name}: {err}");
        // The plugin next door is unaffected, and so is the hostile one's next event.
        let now = call(&host, "example", &command("now", "null")).expect("example answers");
        assert!(now.expect("reply")["now_ms"].as_u64().expect("number") > 1_600_000_000_000);
        call(&host, "hostile", &command("ok", "null")).expect("fresh instance after a failure");
    }
    let trap = call(&host, "hostile", &command("trap", "null")).expect_err("trap");
    assert!(trap.to_string().contains("trap"), "{trap}");

    let status = host.status();
    let hostile = status.iter().find(|s| s.name == "hostile").expect("status");
    assert_eq!(hostile.events_failed, 5);
    assert_eq!(hostile.state, "active");
}

#[test]
fn fuel_bounds_a_loop_deterministically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(dir.path(), &["hostile"], |c| {
        c.limits.fuel = Some(50_000_000);
        c.limits.deadline = Duration::from_secs(30);
    });
    host.load();
    let err = call(&host, "hostile", &command("loop", "null")).expect_err("loop");
    assert!(
        matches!(
            err,
            EventFailure::Sandbox {
                error: CallError::Fuel,
                ..
            }
        ),
        "{err}"
    );
    call(&host, "hostile", &command("ok", "null")).expect("ok within fuel");
}

#[test]
fn repeated_failures_quarantine_the_plugin_with_back_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(dir.path(), &["hostile"], |c| {
        c.max_failures = 2;
        c.quarantine_base = Duration::from_millis(300);
    });
    host.load();
    for _ in 0..2 {
        call(&host, "hostile", &command("trap", "null")).expect_err("trap");
    }
    let err = call(&host, "hostile", &command("ok", "null")).expect_err("quarantined");
    assert!(matches!(err, EventFailure::Quarantined { .. }), "{err}");
    assert_eq!(host.status()[0].state, "quarantined");
    // `rejected` is the caller's fault: it does not count.
    std::thread::sleep(Duration::from_millis(350));
    call(&host, "hostile", &command("nonsense", "null")).expect_err("rejected");
    assert_eq!(host.status()[0].state, "active");
    // Failing again right after a quarantine doubles the next one.
    for _ in 0..2 {
        call(&host, "hostile", &command("fail", "null")).expect_err("fail");
    }
    let remaining = host.status()[0]
        .quarantined_for_ms
        .expect("quarantined again");
    assert!(
        remaining > 300,
        "second quarantine is longer: {remaining} ms"
    );
    // A success after the quarantine clears it.
    std::thread::sleep(Duration::from_millis(remaining + 50));
    call(&host, "hostile", &command("ok", "null")).expect("recovered");
}

#[test]
fn what_may_not_load_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(
        dir.path(),
        &["example", "bad_describe", "forbidden_import", "template"],
        |_| {},
    );
    host.load();
    // A newcomer claiming a running plugin's object (its file sorts first, so file order
    // alone would let it win).
    plugins::install(dir.path(), &["claimer"]);
    let report = host.load();
    assert_eq!(report.loaded, ["example", "template"], "{report:?}");
    let reason = |file: &str| {
        report
            .refused
            .iter()
            .find(|r| r.file.ends_with(file))
            .unwrap_or_else(|| panic!("{file} refused: {report:?}"))
            .reason
            .clone()
    };
    let claimer = reason("claimer.wasm");
    assert!(
        claimer.contains("claims object 42799") && claimer.contains("example"),
        "{claimer}"
    );
    let bad = reason("bad_describe.wasm");
    assert!(
        bad.contains("malformed describe()") && bad.contains("Bad Name!"),
        "{bad}"
    );
    let sockets = reason("forbidden_import.wasm");
    assert!(
        sockets.contains("does not grant") && sockets.contains("wasi:sockets"),
        "{sockets}"
    );
    // The refusals do not disturb the plugins that loaded.
    call(&host, "example", &command("now", "null")).expect("example works");
}

#[test]
fn forbidden_effects_fail_the_event_and_nothing_of_it_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(dir.path(), &["example"], |_| {});
    host.load();
    for (name, want) in [
        ("write-core", "object 3 is not owned by plugin example"),
        ("bad-path", "is not an LwM2M path"),
    ] {
        let err = call(&host, "example", &command(name, r#"{"endpoint":"dev"}"#)).expect_err(name);
        assert!(
            matches!(&err, EventFailure::Effect { reason, .. } if reason.contains(want)),
            "{name}: {err}"
        );
    }
    let rejected = call(&host, "example", &command("read", "[1,2]")).expect_err("bad argument");
    assert!(
        matches!(rejected, EventFailure::Rejected { .. }),
        "{rejected}"
    );
}

#[test]
fn reload_swaps_while_an_event_finishes_on_the_old_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Arc::new(host(dir.path(), &["example", "hostile"], |c| {
        c.limits.deadline = Duration::from_secs(10);
    }));
    host.load();
    let running = {
        let host = Arc::clone(&host);
        std::thread::spawn(move || call(&host, "hostile", &command("slow", "500")))
    };
    std::thread::sleep(Duration::from_millis(100));
    std::fs::remove_file(dir.path().join("plugins/hostile.wasm")).expect("remove");
    let report = host.load();
    assert_eq!(report.loaded, ["example"], "the new table no longer has it");
    assert!(host.routing().get("hostile").is_none());
    let reply = running
        .join()
        .expect("thread")
        .expect("the running event finished");
    assert_eq!(reply, Some(serde_json::json!({"slept": 500})));

    // A file that no longer loads keeps its previous version running.
    std::fs::write(dir.path().join("plugins/example.wasm"), b"not a component").expect("write");
    let report = host.load();
    assert_eq!(report.loaded, ["example"]);
    assert!(
        report.refused[0].reason.contains("not a valid component"),
        "{report:?}"
    );
    call(&host, "example", &command("now", "null")).expect("the previous version answers");
}

#[test]
fn signed_manifests_pin_the_digest_and_the_signer() {
    use steward::plugins_cli::{PluginsArgs, PluginsCommand, run};

    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(dir.path(), &["example"], |c| c.require_signed = true);
    let report = host.load();
    assert!(report.loaded.is_empty());
    assert!(
        report.refused[0].reason.contains("no signed manifest"),
        "{report:?}"
    );

    // The publisher signs with the CLI; the server trusts the signer's public key.
    let group =
        openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("curve");
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("key"))
        .expect("pkey");
    let key_file = dir.path().join("publisher.pem");
    std::fs::write(&key_file, key.private_key_to_pem_pkcs8().expect("pem")).expect("key");
    let component = dir.path().join("plugins/example.wasm");
    let sign = |signer: &str| {
        run(&PluginsArgs {
            command: PluginsCommand::Sign {
                key: key_file.clone(),
                signer: signer.into(),
                file: component.clone(),
            },
            api: None,
            token: None,
        })
        .expect("signed")
    };
    let lines = sign("publisher");
    assert!(lines[0].contains("plugin example 0.1.0"), "{lines:?}");
    let report = host.load();
    assert!(
        report.refused[0].reason.contains("unknown signer"),
        "{report:?}"
    );
    let signers = dir.path().join("plugins/signers");
    std::fs::create_dir_all(&signers).expect("signers");
    std::fs::write(
        signers.join("publisher.pem"),
        key.public_key_to_pem().expect("public pem"),
    )
    .expect("signer");
    let report = host.load();
    assert_eq!(report.loaded, ["example"], "{report:?}");
    assert_eq!(host.status()[0].signer.as_deref(), Some("publisher"));

    // Another component under the signed manifest: the digest no longer matches.
    std::fs::copy(plugins::component("template"), &component).expect("swap");
    let report = host.load();
    let refused = &report.refused[0].reason;
    assert!(refused.contains("digest mismatch"), "{refused}");
    assert_eq!(
        report.loaded,
        ["example"],
        "the signed version keeps running"
    );

    // A manifest for the right bytes but another plugin's name.
    let bytes = std::fs::read(&component).expect("read");
    let pem = String::from_utf8(key.private_key_to_pem_pkcs8().expect("pem")).expect("utf8");
    let manifest =
        steward::plugins::manifest::sign_manifest(&bytes, "example", None, "publisher", &pem)
            .expect("manifest");
    std::fs::write(dir.path().join("plugins/example.wasm.manifest"), manifest).expect("write");
    let report = host.load();
    assert!(
        report.refused[0]
            .reason
            .contains("manifest is for plugin \"example\""),
        "{report:?}"
    );
}

#[test]
fn the_template_answers_hello() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(dir.path(), &["template"], |_| {});
    assert_eq!(host.load().loaded, ["template"]);
    let reply = call(&host, "template", &command("hello", "\"world\"")).expect("hello");
    assert_eq!(reply, Some(serde_json::json!({"hello": "world"})));
}

#[test]
fn a_newcomer_cannot_take_objects_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    plugins::install(dir.path(), &["example"]);
    let store = Arc::new(SledStore::open(dir.path().join("db")).expect("store"));
    let config = HostConfig::in_data_dir(dir.path());
    {
        let first = PluginHost::new(config.clone(), Some(Arc::clone(&store)), None).expect("host");
        assert_eq!(first.load().loaded, ["example"]);
    }
    // While the server is down, a component claiming the same object arrives; its file name
    // sorts first.
    plugins::install(dir.path(), &["claimer"]);
    let restarted = PluginHost::new(config, Some(store), None).expect("host");
    let report = restarted.load();
    assert_eq!(report.loaded, ["example"], "{report:?}");
    assert!(
        report.refused[0]
            .reason
            .contains("which plugin example already owns")
    );
}
