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

/// Stack the decoder gets in `deep_nesting_does_not_overflow_the_stack`:
/// far under a worker's (the main thread's 8 MiB). Unoptimized code takes
/// several times more stack per level, hence more room in debug builds.
const SMALL_STACK: usize = if cfg!(debug_assertions) {
    512 * 1024
} else {
    64 * 1024
};

/// Deeply nested input (an unknown key's value is skipped, a known one is
/// type-checked) must fail or pass without exhausting even a small stack.
/// MessagePack nesting once went 1024 levels deep (rmp-serde's default
/// limit), which took over 64 KiB of stack in a release build and 2 to 4
/// MiB in a debug one.
#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    const DEPTH: usize = 1 << 20;
    let mut inputs: Vec<(Proto, Vec<u8>)> = Vec::new();
    for key in ["zz", "rid", "room", "props", "set", "last", "data"] {
        // {"KEY": [[[[...]]]]} in MessagePack: fixmap 1, fixstr, fixarray 1 ...
        let mut mp = vec![0x81, 0xa0 | key.len() as u8];
        mp.extend_from_slice(key.as_bytes());
        mp.extend(std::iter::repeat_n(0x91u8, DEPTH));
        mp.push(0xc0);
        inputs.push((Proto::Msgpack, mp));
        // Nested maps: {"KEY": {"": {"": ...}}}.
        let mut mp = vec![0x81, 0xa0 | key.len() as u8];
        mp.extend_from_slice(key.as_bytes());
        for _ in 0..DEPTH / 2 {
            mp.extend_from_slice(&[0x81, 0xa0]);
        }
        mp.push(0xc0);
        inputs.push((Proto::Msgpack, mp));

        let mut js = format!("{{\"{key}\":").into_bytes();
        js.extend(std::iter::repeat_n(b'[', DEPTH));
        inputs.push((Proto::Json, js));
        let mut js = format!("{{\"{key}\":").into_bytes();
        for _ in 0..DEPTH / 8 {
            js.extend_from_slice(b"{\"a\":");
        }
        inputs.push((Proto::Json, js));
    }
    let t = std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(move || {
            for (proto, bytes) in &inputs {
                assert!(decode(*proto, bytes).is_err(), "{proto:?} nesting accepted");
            }
        })
        .expect("spawn");
    t.join().expect("decoder thread");
}

/// Nesting within the limit still decodes: unknown keys are ignored however
/// they are shaped (forward compatibility), up to 16 levels deep.
#[test]
fn moderate_nesting_decodes() {
    let mut mp = vec![
        0x82, 0xa1, b't', 0xa4, b'p', b'i', b'n', b'g', 0xa2, b'z', b'z',
    ];
    mp.extend(std::iter::repeat_n(0x91u8, 15));
    mp.push(0xc0);
    let req = decode(Proto::Msgpack, &mp).expect("msgpack nested 16 deep");
    assert_eq!(req.t.as_deref(), Some("ping"));

    let js = format!(
        "{{\"t\":\"ping\",\"zz\":{}1{}}}",
        "[".repeat(15),
        "]".repeat(15)
    );
    let req = decode(Proto::Json, js.as_bytes()).expect("json nested 16 deep");
    assert_eq!(req.t.as_deref(), Some("ping"));
}
