//! A hostile test plugin: the host must survive each of its commands.
//!
//! Owns object 42798 and wants `command`:
//!
//! - `ok` → reply `{"ok": true}`;
//! - `loop` → loops forever (the CPU deadline must stop it);
//! - `bomb` → allocates 1 MiB chunks without bound (the memory cap must stop it);
//! - `trap` → panics, which traps;
//! - `host-spin` → calls the host's `kv-list("", 1000)` forever (time spent in the host must
//!   count against the deadline);
//! - `fail` → `Err(failed)`;
//! - `slow` → busy for the number of milliseconds in its argument, then replies
//!   `{"slept": ms}` (an event still running while the host reloads).

use std::hint::black_box;

use steward_plugin_sdk::{
    Description, Effect, Event, EventKinds, ObjectClaim, Plugin, PluginError, effect, failed, host,
    rejected,
};

struct Hostile;

impl Plugin for Hostile {
    fn describe() -> Description {
        Description {
            name: "hostile".into(),
            version: "0.1.0".into(),
            objects: vec![ObjectClaim {
                id: 42798,
                ddf: include_str!("../42798.xml").into(),
            }],
            events: EventKinds::COMMAND,
        }
    }

    fn handle(event: Event) -> Result<Vec<Effect>, PluginError> {
        let Event::Command(command) = event else {
            return Ok(vec![]);
        };
        match command.name.as_str() {
            "ok" => Ok(vec![effect::reply(r#"{"ok": true}"#)]),
            "loop" => spin(),
            "bomb" => bomb(),
            "trap" => panic!("deliberate trap"),
            "host-spin" => host_spin(),
            "fail" => Err(failed("asked to fail")),
            "slow" => {
                let ms: u64 = command
                    .argument
                    .parse()
                    .map_err(|_| rejected("slow takes a number of milliseconds"))?;
                let until = host::now_ms().saturating_add(ms);
                while host::now_ms() < until {
                    black_box(());
                }
                Ok(vec![effect::reply(format!(r#"{{"slept": {ms}}}"#))])
            }
            other => Err(rejected(format!("unknown command {other}"))),
        }
    }
}

steward_plugin_sdk::export_plugin!(Hostile);

/// Counts forever; `black_box` keeps the optimizer from proving the loop useless.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Keeps 1 MiB chunks until `memory.grow` fails (which aborts the instance).
fn bomb() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(vec![0xa5; 1 << 20]);
        black_box(&mut chunks);
    }
}

/// Calls into the host forever.
fn host_spin() -> ! {
    loop {
        black_box(host::kv_list("", 1000));
    }
}
