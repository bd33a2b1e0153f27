//! Codec micro-benches through the public API of `roomd::protocol`, for both
//! subprotocols (`roomd.v1.msgpack`, `roomd.v1.json`):
//!
//! - `decode_pub_64`: a client's `pub` (`rid`, `room`, 64 bytes of `data`);
//! - `decode_join`: a client's `join` (`rid`, `room`);
//! - `encode_msg_64` / `encode_msg_4k`: a server `msg` (`room`, `from`,
//!   `seq`, `data`) built as a `V` and encoded into one whole WebSocket
//!   frame with `encode_frame`;
//! - `frames_*`: `Frames::new(v).get(proto)`, the fan-out path: a message
//!   encoded once per subprotocol (`frames_one`: a room where everyone
//!   speaks the same subprotocol; `frames_both`: both forms) and
//!   `frames_cached`, the per-recipient `get` once a form exists.
//!
//! The data is printable ASCII, as a JSON client would send it: JSON then
//! carries it as a `data` string; bytes that are not UTF-8 would go out
//! as `data64` (base64) instead. MessagePack carries it as `bin`.
//!
//! Run: `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomd::protocol::{decode, encode_frame, encode_payload, Frames, Proto, V};

const PROTOS: [(Proto, &str); 2] = [(Proto::Msgpack, "msgpack"), (Proto::Json, "json")];
const ROOM: &str = "lobby-42";

/// `n` bytes of printable ASCII.
fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The server's `msg` for one published message, as the handler builds it.
fn msg(data: &[u8]) -> V<'_> {
    V::Map(vec![
        ("t", V::Str("msg")),
        ("room", V::Str(ROOM)),
        ("from", V::U(123_456)),
        ("seq", V::U(987_654)),
        ("data", V::Bin(data)),
    ])
}

/// A client request payload, encoded the way a client of `proto` sends it.
fn request(proto: Proto, v: &V) -> Vec<u8> {
    encode_payload(proto, v)
}

fn decoding(c: &mut Criterion) {
    let d64 = data(64);
    let pub_req = V::Map(vec![
        ("t", V::Str("pub")),
        ("rid", V::U(7)),
        ("room", V::Str(ROOM)),
        ("data", V::Bin(&d64)),
    ]);
    let join_req = V::Map(vec![
        ("t", V::Str("join")),
        ("rid", V::U(8)),
        ("room", V::Str(ROOM)),
    ]);
    let mut group = c.benchmark_group("codec");
    for (proto, name) in PROTOS {
        let pub_payload = request(proto, &pub_req);
        let req = decode(proto, &pub_payload).expect("the pub request decodes");
        assert_eq!(req.data.as_ref().map(|b| &*b.0), Some(&d64[..]));
        group.bench_function(format!("decode_pub_64/{name}"), |b| {
            b.iter(|| black_box(decode(proto, black_box(&pub_payload)).is_ok()))
        });
        let join_payload = request(proto, &join_req);
        let req = decode(proto, &join_payload).expect("the join request decodes");
        assert_eq!(req.room.as_deref(), Some(ROOM));
        group.bench_function(format!("decode_join/{name}"), |b| {
            b.iter(|| black_box(decode(proto, black_box(&join_payload)).is_ok()))
        });
    }
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (size, label) in [(64, "64"), (4096, "4k")] {
        let d = data(size);
        group.throughput(Throughput::Bytes(size as u64));
        for (proto, name) in PROTOS {
            group.bench_function(format!("encode_msg_{label}/{name}"), |b| {
                b.iter(|| encode_frame(proto, &msg(black_box(&d))))
            });
        }
    }
    group.finish();
}

fn frames(c: &mut Criterion) {
    let d = data(64);
    let mut group = c.benchmark_group("codec");
    for (proto, name) in PROTOS {
        group.bench_function(format!("frames_one_64/{name}"), |b| {
            b.iter(|| {
                let mut f = Frames::new(msg(black_box(&d)));
                black_box(f.get(proto).len())
            })
        });
    }
    group.bench_function("frames_both_64", |b| {
        b.iter(|| {
            let mut f = Frames::new(msg(black_box(&d)));
            black_box(f.get(Proto::Msgpack).len()) + black_box(f.get(Proto::Json).len())
        })
    });
    let mut f = Frames::new(msg(&d));
    assert_eq!(
        f.get(Proto::Msgpack),
        &encode_frame(Proto::Msgpack, &msg(&d))[..]
    );
    assert_eq!(f.get(Proto::Json), &encode_frame(Proto::Json, &msg(&d))[..]);
    group.bench_function("frames_cached_64", |b| {
        b.iter(|| black_box(f.get(black_box(Proto::Msgpack)).len()))
    });
    group.finish();
}

criterion_group!(benches, decoding, encoding, frames);
criterion_main!(benches);
