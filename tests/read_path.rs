//! The read path: many requests arriving in one TCP segment burst (more than
//! the server handles per connection per turn) and messages larger than its
//! read buffers are all processed, whole and in order.

#[macro_use]
mod common;

use common::*;

/// One masked client frame (RFC 6455 5.2; a zero masking key leaves the
/// payload as it is, which is legal).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn a_burst_of_requests_in_one_write_is_handled_whole_and_in_order() {
    let server = Server::start(&["--rate-limit", "100000"]);
    let (mut a, mut b) = server.pair("r");
    const N: u32 = 300;
    let mut burst = Vec::new();
    for rid in 1..=N {
        let m = msg! {"t" => "pub", "rid" => rid, "room" => "r", "data" => bin(rid.to_be_bytes())};
        burst.extend(client_frame(0x2, &m.to_msgpack()));
    }
    a.write_raw_bytes(&burst);
    for rid in 1..=N {
        let ok = a.expect("ok");
        assert_eq!(ok["rid"].u(), u64::from(rid), "acks in request order");
        assert_eq!(ok["seq"].u(), u64::from(rid));
    }
    for rid in 1..=N {
        let m = b.expect("msg");
        assert_eq!(m["seq"].u(), u64::from(rid));
        assert_eq!(m["data"].b(), rid.to_be_bytes());
    }
}

#[test]
fn a_message_larger_than_the_read_buffers_arrives_intact() {
    let server = Server::start(&["--max-message", "1000000"]);
    let (mut a, mut b) = server.pair("r");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let m = msg! {"t" => "pub", "rid" => 1u32, "room" => "r", "data" => bin(&data)};
    // Followed in the same write by a small request, which must wait its turn.
    let mut bytes = client_frame(0x2, &m.to_msgpack());
    bytes.extend(client_frame(
        0x2,
        &msg! {"t" => "ping", "rid" => 2u32}.to_msgpack(),
    ));
    a.write_raw_bytes(&bytes);
    assert_eq!(a.expect("ok")["rid"].u(), 1);
    assert_eq!(a.expect("pong")["rid"].u(), 2);
    assert_eq!(b.expect("msg")["data"].b(), &data[..]);
}
