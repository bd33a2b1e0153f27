//! `roomd::protocol::decode` of a `roomd.v1.json` message: any bytes a client
//! can put in a WebSocket message must decode or fail, never panic. (Text
//! frames are UTF-8-checked before they get here, but a JSON connection's
//! binary frames are not, so arbitrary bytes are fair input.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomd::protocol::{decode, Proto};

fuzz_target!(|data: &[u8]| {
    let _ = std::hint::black_box(decode(Proto::Json, data));
});
