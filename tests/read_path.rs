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

/// One frame with its FIN bit as given (for fragmented messages).
fn client_fragment(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = client_frame(opcode, payload);
    if !fin {
        f[0] &= 0x7f;
    }
    f
}

#[test]
fn a_frame_cut_between_turns_is_kept_while_other_clients_are_read() {
    // A connection's WebSocket parser is lent to others only once it holds
    // nothing: half a frame, or the first fragments of a message, must still
    // be there when the rest arrives, whatever was read in between.
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let whole = client_frame(
        0x2,
        &msg! {"t" => "pub", "rid" => 2u32, "room" => "r", "data" => bin(&data)}.to_msgpack(),
    );
    // A whole `ping`, then half of the `pub` in the same write: once the
    // `pong` is back the server has read the half.
    let mut first = client_frame(0x2, &msg! {"t" => "ping", "rid" => 1u32}.to_msgpack());
    first.extend_from_slice(&whole[..1500]);
    a.write_raw_bytes(&first);
    assert_eq!(a.expect("pong")["rid"].u(), 1);
    // Another client's whole messages are read meanwhile.
    for rid in 10..13u32 {
        b.write_raw_bytes(&client_frame(
            0x2,
            &msg! {"t" => "pub", "rid" => rid, "room" => "r", "data" => bin(b"from b")}
                .to_msgpack(),
        ));
        assert_eq!(b.expect("ok")["rid"].u(), u64::from(rid));
        assert_eq!(a.expect("msg")["data"].b(), b"from b");
    }
    a.write_raw_bytes(&whole[1500..]);
    assert_eq!(a.expect("ok")["rid"].u(), 2);
    assert_eq!(b.expect("msg")["data"].b(), &data[..]);

    // A message in three fragments with a ping between them, each write
    // followed by the other client's traffic.
    let m = msg! {"t" => "pub", "rid" => 3u32, "room" => "r", "data" => bin(&data)}.to_msgpack();
    let (x, rest) = m.split_at(1000);
    let (y, z) = rest.split_at(1000);
    let mut parts = vec![client_fragment(false, 0x2, x)];
    let mut mid = client_frame(0x9, b"hi");
    mid.extend(client_fragment(false, 0x0, y));
    parts.push(mid);
    parts.push(client_fragment(true, 0x0, z));
    for (i, part) in parts[..2].iter().enumerate() {
        a.write_raw_bytes(part);
        let rid = 20 + i as u32;
        b.write_raw_bytes(&client_frame(
            0x2,
            &msg! {"t" => "ping", "rid" => rid}.to_msgpack(),
        ));
        assert_eq!(b.expect("pong")["rid"].u(), u64::from(rid));
    }
    a.write_raw_bytes(&parts[2]);
    assert_eq!(a.expect("ok")["rid"].u(), 3);
    assert_eq!(b.expect("msg")["data"].b(), &data[..]);
}
