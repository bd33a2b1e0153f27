//! Replays every input the fuzzers (tests/fuzz, `scripts/fuzz.sh`) ever
//! crashed on, plus their seeds, through the same calls the fuzz targets
//! make: each must decode or fail, never panic.
//!
//! Inputs live in `tests/fuzz/regressions/TARGET/` (one file per crashing
//! input, named for what it found) and `tests/fuzz/seeds/TARGET/`.

use std::fs;
use std::path::PathBuf;

use roomd::http::{parse_with, Parse};
use roomd::protocol::{decode, Proto};

/// Every file under `tests/fuzz/{regressions,seeds}/target`, with its path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut out = Vec::new();
    for kind in ["regressions", "seeds"] {
        let dir = root.join(kind).join(target);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.expect("read_dir entry").path();
            if path.is_file() {
                let bytes = fs::read(&path).expect("read input");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

fn decode_all(target: &str, proto: Proto) -> usize {
    let all = inputs(target);
    for (path, bytes) in &all {
        let r = std::panic::catch_unwind(|| {
            let _ = decode(proto, bytes);
        });
        assert!(
            r.is_ok(),
            "decode({proto:?}) panicked on {}",
            path.display()
        );
    }
    all.len()
}

#[test]
fn decode_msgpack_inputs() {
    assert!(
        decode_all("decode_msgpack", Proto::Msgpack) > 0,
        "no inputs found"
    );
}

#[test]
fn decode_json_inputs() {
    assert!(
        decode_all("decode_json", Proto::Json) > 0,
        "no inputs found"
    );
}

/// The seeds are valid requests: they must decode (a fuzzer seeded with
/// rejected input explores the error paths only).
#[test]
fn seeds_decode() {
    for (target, proto) in [
        ("decode_msgpack", Proto::Msgpack),
        ("decode_json", Proto::Json),
    ] {
        for (path, bytes) in inputs(target) {
            if path.to_string_lossy().contains("/seeds/") {
                let req = decode(proto, &bytes)
                    .unwrap_or_else(|e| panic!("seed {} does not decode: {e:?}", path.display()));
                assert!(req.t.is_some(), "seed {} has no t", path.display());
            }
        }
    }
}

#[test]
fn http_parse_inputs() {
    let all = inputs("http_parse");
    assert!(!all.is_empty(), "no inputs found");
    for (path, data) in &all {
        for end in [data.len() / 3, data.len() / 2, data.len()] {
            let buf = &data[..end];
            for echo in [None, Some("/echo")] {
                let r = std::panic::catch_unwind(|| parse_with(buf, echo));
                match r {
                    Ok(Parse::Done(_, used)) => assert!(
                        used <= buf.len(),
                        "{}: head of {used} bytes in {}",
                        path.display(),
                        buf.len()
                    ),
                    Ok(Parse::Partial) => {}
                    Err(_) => panic!("parse_with panicked on {}", path.display()),
                }
            }
        }
    }
}
