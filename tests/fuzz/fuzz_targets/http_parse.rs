//! `roomd::http::parse_with`, the request head and upgrade parser, fed the
//! way the worker feeds it: the bytes read so far, growing. Must never panic,
//! and a complete head never claims more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomd::http::{parse_with, Parse};

fuzz_target!(|data: &[u8]| {
    // The worker parses again after every read; try a few split points.
    for end in [data.len() / 3, data.len() / 2, data.len()] {
        let buf = &data[..end];
        for echo in [None, Some("/echo")] {
            if let Parse::Done(route, used) = parse_with(buf, echo) {
                assert!(used <= buf.len(), "head of {used} bytes in {}", buf.len());
                std::hint::black_box(route);
            }
        }
    }
});
