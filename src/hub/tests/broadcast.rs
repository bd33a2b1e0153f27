//! `pub`: delivery to every member but the sender, `echo`, the `ok` reply,
//! and `seq` numbering (gapless from 1, one order for every member); moved
//! from `tests/broadcast.rs`.

use std::collections::HashMap;

use serde_json::json;

use super::room_kit::{err_rid, member, ok_and, publish, u};
use super::*;

/// `a` owns room "r" and `others` joined it, presence drained: `a` and the
/// others, each with its id.
fn room_with(s: &mut Sim, others: usize) -> ((C, u64), Vec<(C, u64)>) {
    let a = member(s, 0);
    s.create(a.0, "r");
    let mut rest: Vec<(C, u64)> = Vec::new();
    for _ in 0..others {
        let c = member(s, 0);
        s.join(c.0, "r");
        s.expect(a.0, "presence");
        for &(o, _) in &rest {
            s.expect(o, "presence");
        }
        rest.push(c);
    }
    (a, rest)
}

#[test]
fn pub_reaches_every_member_but_the_sender() {
    let mut s = Sim::new(1);
    let ((a, a_id), others) = room_with(&mut s, 2);
    // [1, 2, 0xff] is no UTF-8: sent and delivered as data64.
    s.send(a, json!({"t": "pub", "room": "r", "data64": "AQL/"}));
    for &(o, _) in &others {
        let m = s.expect(o, "msg");
        assert_eq!(m["room"], "r");
        assert_eq!(m["from"], a_id);
        assert_eq!(m["seq"], 1, "first message of the room");
        assert_eq!(m["data64"], "AQL/", "{m}");
        assert!(m.get("to").is_none(), "a broadcast has no `to`: {m}");
    }
    // No echo and no `ok` without a rid.
    s.assert_silent(a);
}

#[test]
fn echo_delivers_to_the_sender_too() {
    let mut s = Sim::new(1);
    let ((a, a_id), others) = room_with(&mut s, 1);
    s.send(
        a,
        json!({"t": "pub", "room": "r", "data": "hi", "echo": true}),
    );
    let mine = s.expect(a, "msg");
    assert_eq!(mine["from"], a_id);
    assert_eq!(mine["data"], "hi");
    let theirs = s.expect(others[0].0, "msg");
    assert_eq!(theirs["seq"], mine["seq"]);
    s.send(
        a,
        json!({"t": "pub", "room": "r", "data": "no", "echo": false}),
    );
    s.expect(others[0].0, "msg");
    s.assert_silent(a);
}

#[test]
fn ok_with_seq_only_when_rid_is_given() {
    let mut s = Sim::new(1);
    let ((a, _), others) = room_with(&mut s, 1);
    s.send(a, json!({"t": "pub", "room": "r", "data": "1"}));
    assert_eq!(s.expect(others[0].0, "msg")["seq"], 1);
    s.assert_silent(a);

    s.send(a, json!({"t": "pub", "rid": 42, "room": "r", "data": "2"}));
    let ok = s.expect(a, "ok");
    assert_eq!(ok["rid"], 42);
    assert_eq!(ok["seq"], 2);
    assert_eq!(s.expect(others[0].0, "msg")["seq"], 2);
}

#[test]
fn echo_with_rid_gives_both_msg_and_ok_with_the_same_seq() {
    let mut s = Sim::new(1);
    let ((a, _), _others) = room_with(&mut s, 1);
    s.send(
        a,
        json!({"t": "pub", "rid": 7, "room": "r", "data": "e", "echo": true}),
    );
    let (ok, m) = ok_and(&mut s, a, "msg", 7);
    assert_eq!(ok["rid"], 7);
    assert_eq!(ok["seq"], m["seq"]);
}

/// The core's side of the integration test of the same name: two
/// publishers' messages interleaved (as the loop reads them), every member
/// sees all of them, seq gapless from 1, in one order.
#[test]
fn seq_is_gapless_and_identical_at_every_member_with_concurrent_publishers() {
    const N: usize = 200;
    let mut s = Sim::new(1);
    let ((a, a_id), others) = room_with(&mut s, 3);
    let (b, b_id) = others[0];
    // a and b publish with echo, interleaved unevenly, so that they also
    // see the room's order; every member must see all 2N messages.
    let (mut i, mut j) = (0, 0);
    let mut turn = 0u32;
    while i < N || j < N {
        turn = turn.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let a_goes = j == N || (i < N && turn >> 16 & 1 == 0);
        let (c, id, k) = if a_goes {
            (a, a_id, &mut i)
        } else {
            (b, b_id, &mut j)
        };
        let data = format!("{id}:{k}");
        s.send(
            c,
            json!({"t": "pub", "room": "r", "data": data, "echo": true}),
        );
        *k += 1;
    }

    let mut members = vec![a, b];
    members.extend(others[1..].iter().map(|&(c, _)| c));
    let seen: Vec<Vec<(u64, u64, String)>> = members
        .iter()
        .map(|&c| {
            let got = (0..2 * N)
                .map(|_| {
                    let m = s.expect(c, "msg");
                    let data = m["data"].as_str().expect("data").to_owned();
                    (u(&m, "seq"), u(&m, "from"), data)
                })
                .collect();
            s.assert_silent(c);
            got
        })
        .collect();
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
    let mut from: HashMap<u64, Vec<&str>> = HashMap::new();
    for (_, f, d) in first {
        from.entry(*f).or_default().push(d);
    }
    assert_eq!(from.len(), 2);
    for (id, datas) in from {
        let expect: Vec<String> = (0..N).map(|i| format!("{id}:{i}")).collect();
        assert_eq!(datas, expect, "publisher {id}'s order");
    }
}

#[test]
fn joined_seq_is_the_last_published_and_numbering_continues() {
    let mut s = Sim::new(1);
    let ((a, _), _) = room_with(&mut s, 0);
    for i in 1..=3 {
        assert_eq!(publish(&mut s, a, "r", "x"), i);
    }
    let late = s.client(0);
    let joined = s.join(late, "r");
    assert_eq!(joined["seq"], 3);
    s.expect(a, "presence");
    assert_eq!(publish(&mut s, a, "r", "y"), 4);
    let m = s.expect(late, "msg");
    assert_eq!(m["seq"], 4, "a late joiner sees only new messages");
}

#[test]
fn seq_is_per_room() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.create(a, "one");
    s.create(a, "two");
    assert_eq!(publish(&mut s, a, "one", "1"), 1);
    assert_eq!(publish(&mut s, a, "one", "2"), 2);
    assert_eq!(publish(&mut s, a, "two", "1"), 1);
}

#[test]
fn pub_by_non_member_is_not_member() {
    let mut s = Sim::new(1);
    let (_, others) = room_with(&mut s, 1);
    let d = s.client(0);
    s.send(d, json!({"t": "pub", "rid": 3, "room": "r", "data": "x"}));
    err_rid(&mut s, d, "not_member", 3);
    s.assert_silent(others[0].0);
}

#[test]
fn empty_and_large_data_are_delivered_unchanged() {
    let mut s = Sim::new(1);
    let ((a, _), others) = room_with(&mut s, 1);
    let big: String = (0..40_000u32)
        .map(|i| char::from(b'!' + (i * 7 % 90) as u8))
        .collect();
    s.send(a, json!({"t": "pub", "room": "r", "data": ""}));
    s.send(a, json!({"t": "pub", "room": "r", "data": big}));
    assert_eq!(s.expect(others[0].0, "msg")["data"], "");
    assert_eq!(s.expect(others[0].0, "msg")["data"], big.as_str());
}
