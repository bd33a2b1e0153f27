//! Limits through the real server: message size (1009, also fragmented),
//! members (`full`, from `--max-members`), slow consumers (4001), the
//! request rate in real time (`rate_limited`, refilled with time), bad
//! requests in a row (4002), and `--help` on what 0 means for every rate
//! flag. The core's limits (members, rooms per connection, meta size, room
//! names, `rate_limited` replies, 0 for unlimited) are unit tested in
//! `src/hub/tests/limits.rs`.

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
