//! Keeps `est-bench` compiling and working: a small run of all three figures against the
//! in-process server must succeed and name each figure. No timing thresholds: the figures
//! depend on the machine.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn est_bench_runs_every_figure() {
    let output = Command::new(env!("CARGO_BIN_EXE_est-bench"))
        .args(["--devices", "20", "--concurrency", "4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "est-bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for figure in [
        "[est] EST enrolments/s on open DTLS sessions",
        "[est-handshake] EST enrolments/s including the handshake",
        "[bootstrap] complete bootstrap flows/s",
    ] {
        assert!(stdout.contains(figure), "no {figure:?} in:\n{stdout}");
    }
    // Every flow of every figure succeeded, and every certificate was verified.
    assert_eq!(
        stdout.matches("20 ok, 0 failed of 20").count(),
        3,
        "not every flow succeeded:\n{stdout}"
    );
    assert_eq!(
        stdout
            .matches("20 of 20 returned certificates verified")
            .count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("issue 5 target 5000 /s"), "{stdout}");
}
