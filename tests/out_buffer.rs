//! `--out-buffer` bounds everything queued for a slow client: what roomd
//! holds plus what the kernel has accepted for the socket but not delivered.
//! A reader that never reads is closed 4001 once that much is queued, not
//! after the kernel's autotuned send buffer (megabytes) has filled too, and a
//! fast reader of the same room misses nothing.

#[macro_use]
mod common;

use common::*;

const OUT_BUFFER: u64 = 256 * 1024;
/// What the bound may be off by: the slow client's own receive window and
/// the kernel's last, partly filled segment.
const SLACK: u64 = 64 * 1024;

/// The server socket's send queue for `c` (bytes written by roomd and not yet
/// acknowledged by `c`): /proc/net/tcp's tx_queue for the socket whose local
/// port is the server's and remote port is `c`'s.
fn server_tx_queue(server: &Server, c: &Client) -> u64 {
    let mine = c.ws.get_ref().local_addr().expect("local addr").port();
    let theirs = server.addr.port();
    let tcp = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |a: &str| {
        a.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    tcp.lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 5 || port(f[1]) != Some(theirs) || port(f[2]) != Some(mine) {
                return None;
            }
            // "tx_queue:rx_queue", both hex.
            let tx = f[4].split(':').next()?;
            u64::from_str_radix(tx, 16).ok()
        })
        .unwrap_or_else(|| panic!("no server socket for client port {mine} in /proc/net/tcp"))
}

#[test]
fn a_reader_that_never_reads_is_closed_once_out_buffer_is_queued() {
    const N: u64 = 1024; // 4 MiB in all, far more than the bound
    let server = Server::start(&[
        "--out-buffer",
        &OUT_BUFFER.to_string(),
        "--rate-limit",
        "100000",
    ]);
    let (mut a, mut b) = server.pair("r");
    let mut slow = server.client_small_rcvbuf();
    slow.join("r");
    a.expect("presence");
    b.expect("presence");

    // Bursts of 16 x 4 KiB; `b` reads each burst before the next, `slow`
    // reads nothing. After each burst the kernel's queue for `slow` is read.
    // The flood stops when `b` hears that `slow` is away (closed), so `slow`
    // reads what it was sent well within the server's linger time.
    let data = vec![0xa5u8; 4096];
    let mut seq = 0;
    let mut max_tx = 0;
    let mut away = false;
    while !away && seq < N {
        for _ in 0..16 {
            a.send(msg! {"t" => "pub", "room" => "r", "data" => bin(&data)});
        }
        let mut burst = 0;
        while burst < 16 {
            let m = b.recv();
            match m.t() {
                "msg" => {
                    seq += 1;
                    burst += 1;
                    assert_eq!(m["seq"].u(), seq, "the fast reader misses nothing");
                }
                "presence" if m.get("away").map(|v| v.u()) == Some(slow.id) => away = true,
                _ => panic!("unexpected {m:?}"),
            }
        }
        max_tx = max_tx.max(server_tx_queue(&server, &slow));
    }
    eprintln!("largest kernel send queue for the slow reader: {max_tx} bytes");
    assert!(
        away,
        "the slow reader was closed during a flood of {N} x 4 KiB"
    );
    assert!(
        max_tx <= OUT_BUFFER + SLACK,
        "the kernel held {max_tx} bytes for the slow reader (--out-buffer {OUT_BUFFER})"
    );

    // Everything that was queued for it when it was cut off is still
    // delivered before the close frame: that is what it held on the server.
    let got = slow.expect_close(4001);
    let bytes: u64 = got
        .iter()
        .filter(|m| m.t() == "msg")
        .map(|m| m["data"].b().len() as u64)
        .sum();
    eprintln!(
        "slow reader got {} messages ({bytes} data bytes) before 4001",
        got.len()
    );
    assert!(
        bytes <= OUT_BUFFER + SLACK,
        "{bytes} data bytes were queued for the slow reader (--out-buffer {OUT_BUFFER})"
    );
    assert!(
        bytes >= OUT_BUFFER / 2,
        "it was not cut off early: {bytes} data bytes"
    );

    // The room goes on for the others (`a` also hears that `slow` is away).
    a.send(msg! {"t" => "pub", "rid" => 9000u32, "room" => "r", "data" => bin("after")});
    let ok = a.recv_type("ok");
    assert_eq!(ok["seq"].u(), seq + 1, "{ok:?}");
    assert_eq!(b.recv_type("msg")["data"].b(), b"after");
}
