//! `pub` over real sockets: delivery of msgpack `bin` data, empty and large,
//! and `seq` numbering under truly concurrent publishers. `echo`, the `ok`
//! reply and `seq` rules are tested on the core in
//! `src/hub/tests/broadcast.rs`.

#[macro_use]
mod common;

use common::*;
use std::thread;

/// A server with `a` owning room "r" and `others` joined, presence drained.
fn room_with(server: &Server, others: usize) -> (Client, Vec<Client>) {
    let mut a = server.client();
    a.create("r");
    let mut rest: Vec<Client> = Vec::new();
    for _ in 0..others {
        let mut c = server.client();
        c.join("r");
        a.expect("presence");
        for o in rest.iter_mut() {
            o.expect("presence");
        }
        rest.push(c);
    }
    (a, rest)
}

#[test]
fn pub_reaches_every_member_but_the_sender() {
    let server = Server::start(&[]);
    let (mut a, mut others) = room_with(&server, 2);
    a.send(msg! {"t" => "pub", "room" => "r", "data" => bin([1u8, 2, 0xff])});
    for o in others.iter_mut() {
        let m = o.expect("msg");
        assert_eq!(m["room"].s(), "r");
        assert_eq!(m["from"].u(), a.id);
        assert_eq!(m["seq"].u(), 1, "first message of the room");
        assert!(matches!(m["data"], Value::Bin(_)), "data is bin: {m:?}");
        assert_eq!(m["data"].b(), [1u8, 2, 0xff]);
        assert!(!m.has("to"), "a broadcast has no `to`: {m:?}");
    }
    // No echo and no `ok` without a rid.
    a.expect_silence(SILENCE);
}

#[test]
fn seq_is_gapless_and_identical_at_every_member_with_concurrent_publishers() {
    const N: usize = 200;
    let server = Server::start(&[]);
    let (a, others) = room_with(&server, 3);
    let mut others = others.into_iter();
    let b = others.next().unwrap();
    let readers: Vec<Client> = others.collect();

    // a and b publish concurrently with echo, so that they also see the
    // room's order; every member must see all 2N messages, seq 1..=2N.
    let publish = |mut c: Client| {
        thread::spawn(move || {
            for i in 0..N {
                let data = format!("{}:{i}", c.id);
                c.send(msg! {"t" => "pub", "room" => "r", "data" => bin(data), "echo" => true});
            }
            collect(&mut c, 2 * N)
        })
    };
    let ha = publish(a);
    let hb = publish(b);
    let hr: Vec<_> = readers
        .into_iter()
        .map(|mut c| thread::spawn(move || collect(&mut c, 2 * N)))
        .collect();

    let mut seen = vec![ha.join().unwrap(), hb.join().unwrap()];
    seen.extend(hr.into_iter().map(|h| h.join().unwrap()));
    let first = &seen[0];
    let seqs: Vec<u64> = first.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=2 * N as u64).collect::<Vec<_>>(),
        "gapless from 1"
    );
    for other in &seen[1..] {
        assert_eq!(other, first, "every member sees the same order");
    }
    // Each publisher's messages keep their sending order.
    let mut from: std::collections::HashMap<u64, Vec<&[u8]>> = Default::default();
    for (_, f, d) in first {
        from.entry(*f).or_default().push(d);
    }
    assert_eq!(from.len(), 2);
    for (id, datas) in from {
        let expect: Vec<Vec<u8>> = (0..N).map(|i| format!("{id}:{i}").into_bytes()).collect();
        let got: Vec<Vec<u8>> = datas.iter().map(|d| d.to_vec()).collect();
        assert_eq!(got, expect, "publisher {id}'s order");
    }
}

/// Reads `n` `msg`s as (seq, from, data).
fn collect(c: &mut Client, n: usize) -> Vec<(u64, u64, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let m = c.expect("msg");
            (m["seq"].u(), m["from"].u(), m["data"].b().to_vec())
        })
        .collect()
}

#[test]
fn empty_and_large_data_are_delivered_unchanged() {
    let server = Server::start(&[]);
    let (mut a, mut others) = room_with(&server, 1);
    let big: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    a.send(msg! {"t" => "pub", "room" => "r", "data" => bin(b"")});
    a.send(msg! {"t" => "pub", "room" => "r", "data" => bin(&big)});
    assert_eq!(others[0].expect("msg")["data"].b(), b"");
    assert_eq!(others[0].expect("msg")["data"].b(), &big[..]);
}
