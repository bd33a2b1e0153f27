//! `roomd::protocol::decode` of a `roomd.v1.msgpack` message: any bytes a
//! client can put in a WebSocket message must decode or fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomd::protocol::{decode, Proto};

fuzz_target!(|data: &[u8]| {
    let _ = std::hint::black_box(decode(Proto::Msgpack, data));
});
