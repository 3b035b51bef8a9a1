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

    let cases: [(&str, fn(&EventFailure) -> bool); 4] = [
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
