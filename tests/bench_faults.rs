//! `roomd-bench faults` against a real `--workers 2` server: workers killed
//! under load leave no request unanswered, no delivery lost in a room that
//! survived, and nothing behind once the grace period has passed; bad
//! flags are refused with a message and no load.

#[macro_use]
mod common;

use std::process::{Command, Output};

use common::*;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomd-bench"))
        .arg("faults")
        .args(args)
        .output()
        .expect("roomd-bench runs")
}

/// Two kills in two seconds of load, with drops of the harness's own.
#[test]
fn killed_workers_lose_nothing_in_surviving_rooms() {
    let server = start_workers(2, &["--grace-ms", "1000"]);
    let url = format!("ws://{}", server.addr);
    let pid = server.pid().to_string();
    let json = std::env::temp_dir().join(format!("bench-faults-{}.json", std::process::id()));
    let json_s = json.to_string_lossy().to_string();
    #[rustfmt::skip]
    let out = bench(&[
        "--url", &url, "--server-pid", &pid, "--conns", "40", "--rate", "100",
        "--duration", "2", "--kill-every", "0.8", "--drops-per-s", "5", "--drain", "3",
        "--grace-ms", "1000", "--settle", "3", "--quiet", "--json", &json_s,
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report written")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    let f = &v["faults"];
    assert_eq!(f["kills"], 2, "{text}");
    assert_eq!(f["never_answered"], 0, "{text}");
    assert_eq!(f["lost_in_surviving_rooms"], 0, "{text}");
    assert_eq!(f["duplicated"], 0, "{text}");
    assert_eq!(f["back_ms"].as_array().map(Vec::len), Some(2), "{text}");
    for g in [
        "roomd_sessions",
        "roomd_bus_shadow_sessions",
        "roomd_resume_tokens",
    ] {
        assert_eq!(f["leftover"][g], 0, "{g}: {text}");
    }
    assert_eq!(f["restarts_died"], 2, "{text}");
}

#[test]
fn bad_flags_are_refused_before_any_load() {
    for (args, says) in [
        (&["--kill-every", "1"][..], "need --server-pid"),
        (&["--conns", "10"][..], "multiple of --room-size"),
        (&["--procs", "2"][..], "one process"),
        (
            &["--kill-every", "0.01", "--server-pid", "1"][..],
            "--kill-every must be",
        ),
    ] {
        let out = bench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
