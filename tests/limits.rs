//! What a client sees when it hits each limit: message size (1009), members
//! (`full`), rooms per connection (`forbidden`), meta size and room names,
//! slow consumers (4001), request rate (`rate_limited`; 0 for unlimited, as
//! every rate flag) and bad requests in a row (4002).

#[macro_use]
mod common;

use common::*;
use std::thread;
use std::time::Duration;

#[test]
fn message_over_max_message_is_closed_1009() {
    let server = Server::start(&["--max-message", "1024"]);
    let (mut a, mut b) = server.pair("r");

    a.send(msg! {"t" => "pub", "room" => "r", "data" => bin(vec![1u8; 900])});
    assert_eq!(
        b.expect("msg")["data"].b().len(),
        900,
        "under the limit is fine"
    );

    a.send(msg! {"t" => "pub", "room" => "r", "data" => bin(vec![2u8; 2000])});
    a.expect_close(1009);
    // The oversized message was not delivered: b's next news is a's drop.
    let p = b.expect("presence");
    assert_eq!(p["away"].u(), a.id, "{p:?}");
    server.assert_alive();
}

#[test]
fn fragmented_message_over_max_message_is_closed_1009() {
    let server = Server::start(&["--max-message", "1024"]);
    let mut a = server.client();
    // Binary frame without FIN, then a final continuation: 1200 bytes total.
    a.write_raw_bytes(&encode_client_frame(0x02, &[0x90; 600]));
    a.write_raw_bytes(&encode_client_frame(0x80, &[0x90; 600]));
    a.expect_close(1009);
    server.assert_alive();
}

#[test]
fn max_members_makes_a_room_full() {
    let server = Server::start(&["--max-members", "2"]);
    let mut a = server.client();
    a.create("r"); // default max 16, lowered to --max-members
    let mut b = server.client();
    b.join("r");
    a.expect("presence");
    let mut c = server.client();
    c.send(msg! {"t" => "join", "rid" => 1u32, "room" => "r"});
    c.expect_err_rid("full", 1);

    a.create_with(msg! {"room" => "one", "max" => 1u32});
    c.send(msg! {"t" => "join", "rid" => 2u32, "room" => "one"});
    c.expect_err_rid("full", 2);

    // A seat freed is a seat available.
    b.leave("r");
    c.join("r");
}

#[test]
fn create_max_above_the_server_limit_is_lowered() {
    let server = Server::start(&["--max-members", "3"]);
    let mut a = server.client();
    a.create_with(msg! {"room" => "big", "max" => 1000u32});
    a.create_with(msg! {"room" => "zero", "max" => 0u32});
    a.send(msg! {"t" => "list", "rid" => 1u32});
    let rooms = a.expect("rooms");
    for r in rooms["rooms"].arr() {
        assert_eq!(r["max"].u(), 3, "{r:?}");
    }
}

#[test]
fn rooms_per_connection_is_forbidden_past_the_limit() {
    let server = Server::start(&["--max-rooms-per-conn", "2"]);
    let mut other = server.client();
    other.create("theirs");
    let mut a = server.client();
    a.create("one");
    a.create("two");
    a.send(msg! {"t" => "create", "rid" => 50u32, "room" => "three"});
    a.expect_err_rid("forbidden", 50);
    a.send(msg! {"t" => "join", "rid" => 51u32, "room" => "theirs"});
    a.expect_err_rid("forbidden", 51);
    other.expect_silence(SILENCE);
    a.leave("one");
    a.join("theirs");
}

#[test]
fn meta_over_1_kib_is_too_large() {
    let server = Server::start(&[]);
    let mut owner = server.client();
    owner.create("r");

    let mut a = server.client();
    a.send(msg! {"t" => "hello", "rid" => 1u32, "meta" => bin(vec![0u8; 1025])});
    a.expect_err_rid("too_large", 1);

    let mut b = server.client();
    b.send(msg! {"t" => "join", "rid" => 2u32, "room" => "r", "meta" => bin(vec![0u8; 1025])});
    b.expect_err_rid("too_large", 2);
    owner.expect_silence(SILENCE);

    b.send(msg! {"t" => "join", "rid" => 3u32, "room" => "r", "meta" => bin(vec![0u8; 1024])});
    let joined = b.expect("joined");
    assert_eq!(
        joined["members"][1]["meta"].b().len(),
        1024,
        "1 KiB is allowed"
    );
}

#[test]
fn bad_room_names_are_bad_request() {
    let server = Server::start(&[]);
    let mut a = server.client();
    let long = "a".repeat(65);
    let bad = ["", long.as_str(), "a b", "a/b", "é", "a\0b", "room!", "a,b"];
    let mut rid = 100u32;
    for name in bad {
        for t in ["create", "join"] {
            rid += 1;
            a.send(msg! {"t" => t, "rid" => rid, "room" => name});
            let err = a.recv();
            assert_eq!(err.t(), "err", "{t} {name:?}: {err:?}");
            assert_eq!(err["code"].s(), "bad_request", "{t} {name:?}: {err:?}");
            assert_eq!(err["rid"].u(), u64::from(rid));
        }
        // Stay under --max-bad-requests: a success resets the count.
        a.roundtrip();
    }
    let longest = "Z".repeat(64);
    a.create(&longest);
    a.create("Az09._:-");
}

#[test]
fn slow_consumer_is_closed_4001_and_the_room_goes_on() {
    const N: u64 = 1024; // 4 MiB in all
    let server = Server::start(&[
        "--out-buffer",
        "262144",
        "--grace-ms",
        "300",
        "--rate-limit",
        "100000",
    ]);
    let (mut a, mut b) = server.pair("r");
    let mut slow = server.client_small_rcvbuf();
    slow.join("r");
    a.expect("presence");
    b.expect("presence");
    let slow_id = slow.id;

    // `b` keeps up: the flood goes in bursts of 16 x 4 KiB (far under the
    // out-buffer) and `b` reads each burst before the next one. `slow` reads
    // nothing until the end, so its backlog only grows.
    let data = vec![0x5au8; 4096];
    let mut seq = 0;
    // How long each burst takes to reach `b` (printed, not asserted: no
    // speed is asserted in tests).
    let mut burst_us = Vec::new();
    for _ in 0..N / 16 {
        let t0 = std::time::Instant::now();
        for _ in 0..16 {
            a.send(msg! {"t" => "pub", "room" => "r", "data" => bin(&data)});
        }
        for _ in 0..16 {
            seq += 1;
            let m = b.recv_type("msg");
            assert_eq!(m["seq"].u(), seq, "the fast reader misses nothing");
        }
        burst_us.push(t0.elapsed().as_micros());
    }
    burst_us.sort_unstable();
    eprintln!(
        "fast reader, 16 x 4 KiB bursts while the slow reader filled up and was closed: \
         median {} us, max {} us",
        burst_us[burst_us.len() / 2],
        burst_us[burst_us.len() - 1]
    );

    // The slow client, reading at last, finds its close code after whatever
    // was already on its way.
    let got = slow.expect_close(4001);
    assert!(
        (got.len() as u64) < N,
        "it was cut off before the end of the flood"
    );

    // Seats are kept for grace: away, then leave why disconnect.
    let away = a.recv_until(|m| m.t() == "presence");
    assert_eq!(away["away"].u(), slow_id, "{away:?}");
    let leave = a.recv_until(|m| m.t() == "presence");
    assert_eq!(leave["leave"].u(), slow_id, "{leave:?}");
    assert_eq!(leave["why"].s(), "disconnect");

    // Publisher and the other reader are still served both ways.
    let seq = a.publish("r", b"after");
    assert_eq!(seq, N + 1);
    let m = b.recv_type("msg");
    assert_eq!(m["data"].b(), b"after");
    b.send(msg! {"t" => "pub", "room" => "r", "data" => bin("back")});
    assert_eq!(a.expect("msg")["data"].b(), b"back");
}

#[test]
fn rate_limit_drops_requests_with_rate_limited() {
    let server = Server::start(&["--rate-limit", "20", "--max-bad-requests", "1000"]);
    let (mut a, mut b) = server.pair("r");
    // a's create counted as one request; b is another connection.
    for rid in 1..=60u32 {
        a.send(msg! {"t" => "pub", "rid" => rid, "room" => "r", "data" => bin(rid.to_be_bytes())});
    }
    let mut ok = Vec::new();
    let mut limited = 0;
    for _ in 0..60 {
        let m = a.recv();
        match m.t() {
            "ok" => ok.push(m["rid"].u()),
            "err" => {
                assert_eq!(m["code"].s(), "rate_limited", "{m:?}");
                limited += 1;
            }
            _ => panic!("unexpected {m:?}"),
        }
    }
    assert!(
        (15..=30).contains(&ok.len()),
        "about a burst of 20 is accepted, got {}",
        ok.len()
    );
    assert_eq!(ok.len() + limited, 60, "one reply per request");

    // Dropped means dropped: b gets exactly the accepted ones, gapless.
    for (i, rid) in ok.iter().enumerate() {
        let m = b.expect("msg");
        assert_eq!(m["seq"].u(), i as u64 + 1);
        assert_eq!(m["data"].b(), (*rid as u32).to_be_bytes());
    }
    b.expect_silence(SILENCE);

    // The bucket refills with time.
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(a.publish("r", b"later"), ok.len() as u64 + 1);
}

#[test]
fn rate_limited_error_carries_the_rid() {
    let server = Server::start(&["--rate-limit", "5", "--max-bad-requests", "1000"]);
    let mut a = server.client();
    for rid in 1..=15u32 {
        a.send(msg! {"t" => "ping", "rid" => rid});
    }
    let mut rids = Vec::new();
    for _ in 0..15 {
        let m = a.recv();
        assert!(m.t() == "pong" || m["code"].s() == "rate_limited", "{m:?}");
        let rid = m
            .get("rid")
            .unwrap_or_else(|| panic!("every reply and error carries its rid: {m:?}"));
        rids.push(rid.u());
    }
    rids.sort();
    assert_eq!(rids, (1..=15).collect::<Vec<u64>>());
}

#[test]
fn too_many_bad_requests_in_a_row_is_closed_4002() {
    let server = Server::start(&["--max-bad-requests", "3"]);
    let mut a = server.client();
    for rid in 1..=2u32 {
        a.send(msg! {"t" => "frobnicate", "rid" => rid});
        a.expect_err_rid("unknown_type", rid);
    }
    a.roundtrip(); // a success resets the count
    a.send(msg! {"t" => "join", "rid" => 3u32});
    a.expect_err_rid("bad_request", 3);
    a.send(msg! {"t" => "frobnicate", "rid" => 4u32});
    a.expect_err_rid("unknown_type", 4);
    a.roundtrip();

    for rid in 5..=7u32 {
        a.send(msg! {"t" => "frobnicate", "rid" => rid});
    }
    let before = a.expect_close(4002);
    assert!(
        before.iter().all(|m| m.t() == "err"),
        "only errors before the close: {before:?}"
    );
    server.assert_alive();
}

#[test]
fn errors_that_are_not_bad_requests_do_not_count() {
    let server = Server::start(&["--max-bad-requests", "2"]);
    let mut a = server.client();
    for rid in 1..=5u32 {
        a.send(msg! {"t" => "join", "rid" => rid, "room" => "missing"});
        a.expect_err_rid("not_found", rid);
    }
    a.roundtrip();
}

#[test]
fn rate_limit_0_is_unlimited() {
    let server = Server::start(&["--rate-limit", "0"]);
    let mut a = server.client();
    const N: u32 = 5000;
    for rid in 1..=N {
        a.send(msg! {"t" => "ping", "rid" => rid});
    }
    for rid in 1..=N {
        let m = a.recv();
        assert_eq!(m.t(), "pong", "request {rid} of a burst of {N}: {m:?}");
        assert_eq!(m["rid"].u(), u64::from(rid));
    }
}

#[test]
fn help_says_0_is_unlimited_for_every_rate_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomd"))
        .arg("--help")
        .output()
        .expect("roomd --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--rate-limit", "--create-rate", "--pub-bytes-rate"] {
        // A flag's paragraph runs from its name to the next flag.
        let at = help
            .find(&format!("      {flag} "))
            .unwrap_or_else(|| panic!("{flag} in --help:\n{help}"));
        let rest = &help[at + flag.len() + 6..];
        let para = &rest[..rest.find("\n      --").unwrap_or(rest.len())];
        assert!(
            para.contains("0 means unlimited"),
            "{flag} says what 0 means:\n{para}"
        );
    }
}
