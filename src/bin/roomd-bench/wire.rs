//! What goes inside the frames: the harness's payload header (both
//! protocols) and the few roomd MessagePack messages the harness sends and
//! reads (PROTOCOL.md).
//!
//! Payload header, little-endian, at the start of every measured payload:
//! `room: u32, sender: u32, step: u32, seq: u32, sched_ns: u64` (24 bytes),
//! then filler up to `--payload` bytes. `sched_ns` is the scheduled send time
//! on CLOCK_MONOTONIC, so latency is counted from the schedule, not from the
//! moment the harness got round to sending (no coordinated omission).

use rmp::encode as enc;

pub const HEADER: usize = 24;
/// `step` value of the settle probes (never measured).
pub const PROBE_STEP: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub room: u32,
    pub sender: u32,
    pub step: u32,
    pub seq: u32,
    pub sched_ns: u64,
}

impl Header {
    /// Writes the header into the first 24 bytes of `buf` (which is at least that long).
    pub fn write(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&self.room.to_le_bytes());
        buf[4..8].copy_from_slice(&self.sender.to_le_bytes());
        buf[8..12].copy_from_slice(&self.step.to_le_bytes());
        buf[12..16].copy_from_slice(&self.seq.to_le_bytes());
        buf[16..24].copy_from_slice(&self.sched_ns.to_le_bytes());
    }

    pub fn read(buf: &[u8]) -> Option<Header> {
        if buf.len() < HEADER {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&buf[16..24]);
        Some(Header {
            room: u32_at(0),
            sender: u32_at(4),
            step: u32_at(8),
            seq: u32_at(12),
            sched_ns: u64::from_le_bytes(t),
        })
    }
}

/// A payload of `len` bytes (at least `HEADER`) carrying `h`.
pub fn payload(h: &Header, len: usize) -> Vec<u8> {
    let mut v = vec![0x2a; len.max(HEADER)];
    h.write(&mut v);
    v
}

// --- roomd requests (MessagePack maps with string keys) ---

fn kv_str(v: &mut Vec<u8>, k: &str, s: &str) {
    let _ = enc::write_str(v, k);
    let _ = enc::write_str(v, s);
}

fn kv_uint(v: &mut Vec<u8>, k: &str, n: u64) {
    let _ = enc::write_str(v, k);
    let _ = enc::write_uint(v, n);
}

/// `{"t":"create","rid","room","max","idle_ms","join"}`
/// An empty `room` is left out: the server picks the name.
pub fn create(rid: u32, room: &str, max: u16, idle_ms: u32, join: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + room.len());
    let _ = enc::write_map_len(&mut v, if room.is_empty() { 5 } else { 6 });
    kv_str(&mut v, "t", "create");
    kv_uint(&mut v, "rid", rid as u64);
    if !room.is_empty() {
        kv_str(&mut v, "room", room);
    }
    kv_uint(&mut v, "max", max as u64);
    kv_uint(&mut v, "idle_ms", idle_ms as u64);
    let _ = enc::write_str(&mut v, "join");
    let _ = enc::write_bool(&mut v, join);
    v
}

/// `{"t":"join"|"leave","rid","room"}`
pub fn room_req(t: &str, rid: u32, room: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + room.len());
    let _ = enc::write_map_len(&mut v, 3);
    kv_str(&mut v, "t", t);
    kv_uint(&mut v, "rid", rid as u64);
    kv_str(&mut v, "room", room);
    v
}

/// `{"t":"join","rid","room","watch":true}`: join as a watcher (no seat).
pub fn watch(rid: u32, room: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + room.len());
    let _ = enc::write_map_len(&mut v, 4);
    kv_str(&mut v, "t", "join");
    kv_uint(&mut v, "rid", rid as u64);
    kv_str(&mut v, "room", room);
    let _ = enc::write_str(&mut v, "watch");
    let _ = enc::write_bool(&mut v, true);
    v
}

/// `{"t":"lobby","rid","limit"}`: subscribe to the list of public rooms,
/// unfiltered.
pub fn lobby(rid: u32, limit: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    let _ = enc::write_map_len(&mut v, 3);
    kv_str(&mut v, "t", "lobby");
    kv_uint(&mut v, "rid", rid as u64);
    kv_uint(&mut v, "limit", limit as u64);
    v
}

/// `{"t":"unlobby","rid"}`
pub fn unlobby(rid: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    let _ = enc::write_map_len(&mut v, 2);
    kv_str(&mut v, "t", "unlobby");
    kv_uint(&mut v, "rid", rid as u64);
    v
}

/// `{"t":"pub","room","data"}`, plus `rid` when given (the server then acks with `ok`).
pub fn publish(room: &str, data: &[u8], rid: Option<u32>) -> Vec<u8> {
    let mut v = Vec::with_capacity(24 + room.len() + data.len());
    let _ = enc::write_map_len(&mut v, if rid.is_some() { 4 } else { 3 });
    kv_str(&mut v, "t", "pub");
    if let Some(r) = rid {
        kv_uint(&mut v, "rid", r as u64);
    }
    kv_str(&mut v, "room", room);
    let _ = enc::write_str(&mut v, "data");
    let _ = enc::write_bin(&mut v, data);
    v
}

/// `{"t":"pub","rid","room","data","echo":true}`: the sender gets its own
/// `msg` too, so every member sees the room's whole gapless `seq`.
pub fn publish_echo(rid: u32, room: &str, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + room.len() + data.len());
    let _ = enc::write_map_len(&mut v, 5);
    kv_str(&mut v, "t", "pub");
    kv_uint(&mut v, "rid", rid as u64);
    kv_str(&mut v, "room", room);
    let _ = enc::write_str(&mut v, "data");
    let _ = enc::write_bin(&mut v, data);
    let _ = enc::write_str(&mut v, "echo");
    let _ = enc::write_bool(&mut v, true);
    v
}

/// `{"t":"hello","rid","resume":token,"last":{room: seq, ...}}`
pub fn hello_resume(rid: u32, token: &str, last: &[(&str, u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + token.len());
    let _ = enc::write_map_len(&mut v, 4);
    kv_str(&mut v, "t", "hello");
    kv_uint(&mut v, "rid", rid as u64);
    kv_str(&mut v, "resume", token);
    let _ = enc::write_str(&mut v, "last");
    let _ = enc::write_map_len(&mut v, last.len() as u32);
    for (room, seq) in last {
        kv_uint(&mut v, room, *seq);
    }
    v
}

// --- roomd messages from the server: a small zero-copy reader ---

/// The fields of a server message the harness looks at; the rest are skipped.
#[derive(Default, Debug)]
pub struct In<'a> {
    pub t: &'a str,
    pub rid: Option<u64>,
    pub room: Option<&'a str>,
    pub seq: Option<u64>,
    pub data: Option<&'a [u8]>,
    pub code: Option<&'a str>,
    pub msg: Option<&'a str>,
    /// `joined`: `watch:true` for a watcher.
    pub watch: Option<bool>,
    /// `watchers`: the room's number of watchers.
    pub n: Option<u64>,
    /// `lobby` updates: `members` as a count (in `joined` it is a list, and
    /// stays `None`).
    pub members: Option<u64>,
    /// `lobby` updates: `gone:true` when the room left the list.
    pub gone: Option<bool>,
    /// `rooms`: how many rooms the list holds.
    pub rooms: Option<usize>,
    /// `welcome`: the resume token, and the worker serving the connection
    /// (a key roomd adds with several workers).
    pub session: Option<&'a str>,
    pub worker: Option<u64>,
    /// `closed`: why the room closed.
    pub why: Option<&'a str>,
}

struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn byte(&mut self) -> Option<u8> {
        let x = *self.b.get(self.i)?;
        self.i += 1;
        Some(x)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.i.checked_add(n)?;
        let s = self.b.get(self.i..end)?;
        self.i = end;
        Some(s)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        let s = self.take(n)?;
        Some(s.iter().fold(0u64, |a, &x| (a << 8) | x as u64))
    }

    /// Length of a str/bin whose marker is `m`, or None if `m` is neither.
    fn blob_len(&mut self, m: u8) -> Option<usize> {
        Some(match m {
            0xa0..=0xbf => (m & 0x1f) as usize,
            0xd9 | 0xc4 => self.be(1)? as usize,
            0xda | 0xc5 => self.be(2)? as usize,
            0xdb | 0xc6 => self.be(4)? as usize,
            _ => return None,
        })
    }

    /// A map key as raw bytes (compared, never needed as text).
    fn key(&mut self) -> Option<&'a [u8]> {
        let m = self.byte()?;
        let n = self.blob_len(m)?;
        self.take(n)
    }

    /// A bool, or None (and nothing consumed) when `m` is not one.
    fn bool_from(m: u8) -> Option<bool> {
        match m {
            0xc2 => Some(false),
            0xc3 => Some(true),
            _ => None,
        }
    }

    /// An unsigned integer (negative or non-integer values give None).
    fn uint_from(&mut self, m: u8) -> Option<u64> {
        match m {
            0x00..=0x7f => Some(m as u64),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            0xd0 => self.be(1).filter(|v| *v < 0x80),
            0xd1 => self.be(2).filter(|v| *v < 0x8000),
            0xd2 => self.be(4).filter(|v| *v < 0x8000_0000),
            0xd3 => self.be(8).filter(|v| *v < 1 << 63),
            _ => None,
        }
    }

    /// Skips one value of any type (bounded nesting).
    fn skip_from(&mut self, m: u8, depth: u32) -> Option<()> {
        if depth > 32 {
            return None;
        }
        let (items, fixed) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (2 * (m & 0x0f) as usize, 0),
            0x90..=0x9f => ((m & 0x0f) as usize, 0),
            0xa0..=0xbf | 0xd9 | 0xda | 0xdb | 0xc4 | 0xc5 | 0xc6 => (0, self.blob_len(m)?),
            0xcc | 0xd0 => (0, 1),
            0xcd | 0xd1 => (0, 2),
            0xce | 0xd2 | 0xca => (0, 4),
            0xcf | 0xd3 | 0xcb => (0, 8),
            0xd4 => (0, 2),
            0xd5 => (0, 3),
            0xd6 => (0, 5),
            0xd7 => (0, 9),
            0xd8 => (0, 17),
            0xc7 => (0, self.be(1)? as usize + 1),
            0xc8 => (0, self.be(2)? as usize + 1),
            0xc9 => (0, self.be(4)? as usize + 1),
            0xdc => (self.be(2)? as usize, 0),
            0xdd => (self.be(4)? as usize, 0),
            0xde => (2 * self.be(2)? as usize, 0),
            0xdf => (2 * self.be(4)? as usize, 0),
            _ => return None,
        };
        self.take(fixed)?;
        for _ in 0..items {
            let m = self.byte()?;
            self.skip_from(m, depth + 1)?;
        }
        Some(())
    }
}

/// A positive integer marker (fixint, uint 8..64): `uint_from` reads it whole.
fn is_uint(m: u8) -> bool {
    m <= 0x7f || (0xcc..=0xcf).contains(&m)
}

/// Parses a server message; None when it is not a MessagePack map with a string `t`.
pub fn parse(b: &[u8]) -> Option<In<'_>> {
    let mut c = Cur { b, i: 0 };
    let m = c.byte()?;
    let n = match m {
        0x80..=0x8f => (m & 0x0f) as usize,
        0xde => c.be(2)? as usize,
        0xdf => c.be(4)? as usize,
        _ => return None,
    };
    let mut out = In::default();
    let mut has_t = false;
    for _ in 0..n {
        let k = c.key()?;
        let m = c.byte()?;
        match k {
            b"t" => {
                let n = c.blob_len(m)?;
                out.t = std::str::from_utf8(c.take(n)?).ok()?;
                has_t = true;
            }
            b"rid" => out.rid = c.uint_from(m),
            b"seq" => out.seq = c.uint_from(m),
            b"n" | b"members" | b"worker" if is_uint(m) => {
                let v = c.uint_from(m);
                match k {
                    b"n" => out.n = v,
                    b"worker" => out.worker = v,
                    _ => out.members = v,
                }
            }
            b"watch" | b"gone" if Cur::bool_from(m).is_some() => {
                let v = Cur::bool_from(m);
                match k {
                    b"watch" => out.watch = v,
                    _ => out.gone = v,
                }
            }
            b"rooms" if (0x90..=0x9f).contains(&m) || m == 0xdc || m == 0xdd => {
                let n = match m {
                    0xdc => c.be(2)? as usize,
                    0xdd => c.be(4)? as usize,
                    _ => (m & 0x0f) as usize,
                };
                for _ in 0..n {
                    let m = c.byte()?;
                    c.skip_from(m, 1)?;
                }
                out.rooms = Some(n);
            }
            b"room" | b"code" | b"msg" | b"session" | b"why"
                if (0xa0..=0xbf).contains(&m) || (0xd9..=0xdb).contains(&m) =>
            {
                let n = c.blob_len(m)?;
                let s = std::str::from_utf8(c.take(n)?).ok();
                match k {
                    b"room" => out.room = s,
                    b"code" => out.code = s,
                    b"session" => out.session = s,
                    b"why" => out.why = s,
                    _ => out.msg = s,
                }
            }
            b"data"
                if (0xc4..=0xc6).contains(&m)
                    || (0xa0..=0xbf).contains(&m)
                    || (0xd9..=0xdb).contains(&m) =>
            {
                let n = c.blob_len(m)?;
                out.data = Some(c.take(n)?);
            }
            _ => c.skip_from(m, 0)?,
        }
    }
    has_t.then_some(out)
}

/// What `resumed` says of one room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed<'a> {
    /// `{"recovered":bool}`: re-attached; replayed from `last` when true.
    Recovered(bool),
    /// `{"closed":why}`: the room closed while the session was away.
    Closed(&'a str),
}

/// The `rooms` map of a `resumed` message: `{room: {"recovered":bool} |
/// {"closed":why}}`. None when the message is not a map holding one (an
/// entry with neither key is left out).
pub fn resumed_rooms(b: &[u8]) -> Option<Vec<(&str, Resumed<'_>)>> {
    let mut c = Cur { b, i: 0 };
    let n = map_len(&mut c)?;
    for _ in 0..n {
        let k = c.key()?;
        let m = c.byte()?;
        if k != b"rooms" {
            c.skip_from(m, 0)?;
            continue;
        }
        let rooms = map_len_from(&mut c, m)?;
        let mut out = Vec::with_capacity(rooms);
        for _ in 0..rooms {
            let name = std::str::from_utf8(c.key()?).ok()?;
            let m = c.byte()?;
            let fields = map_len_from(&mut c, m)?;
            let mut got = None;
            for _ in 0..fields {
                let k = c.key()?;
                let m = c.byte()?;
                match k {
                    b"recovered" if Cur::bool_from(m).is_some() => {
                        got = Cur::bool_from(m).map(Resumed::Recovered)
                    }
                    b"closed" if (0xa0..=0xbf).contains(&m) || (0xd9..=0xdb).contains(&m) => {
                        let n = c.blob_len(m)?;
                        got = Some(Resumed::Closed(std::str::from_utf8(c.take(n)?).ok()?));
                    }
                    _ => c.skip_from(m, 1)?,
                }
            }
            if let Some(g) = got {
                out.push((name, g));
            }
        }
        return Some(out);
    }
    None
}

fn map_len(c: &mut Cur<'_>) -> Option<usize> {
    let m = c.byte()?;
    map_len_from(c, m)
}

fn map_len_from(c: &mut Cur<'_>, m: u8) -> Option<usize> {
    match m {
        0x80..=0x8f => Some((m & 0x0f) as usize),
        0xde => Some(c.be(2)? as usize),
        0xdf => Some(c.be(4)? as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            room: 7,
            sender: 70,
            step: 1,
            seq: 12345,
            sched_ns: 987654321012,
        };
        let p = payload(&h, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(Header::read(&p), Some(h));
        assert_eq!(Header::read(&p[..23]), None);
    }

    #[test]
    fn parses_msg_and_skips_the_rest() {
        // {"t":"msg","room":"r1","from":5,"seq":300,"data":bin,"extra":[1,{"a":nil}],"x":-3}
        let mut v = Vec::new();
        let _ = enc::write_map_len(&mut v, 7);
        kv_str(&mut v, "t", "msg");
        kv_str(&mut v, "room", "r1");
        kv_uint(&mut v, "from", 5);
        kv_uint(&mut v, "seq", 300);
        let _ = enc::write_str(&mut v, "data");
        let _ = enc::write_bin(&mut v, b"hello");
        let _ = enc::write_str(&mut v, "extra");
        let _ = enc::write_array_len(&mut v, 2);
        let _ = enc::write_uint(&mut v, 1);
        let _ = enc::write_map_len(&mut v, 1);
        let _ = enc::write_str(&mut v, "a");
        let _ = enc::write_nil(&mut v);
        let _ = enc::write_str(&mut v, "x");
        let _ = enc::write_sint(&mut v, -3);
        let m = parse(&v).expect("parses");
        assert_eq!(m.t, "msg");
        assert_eq!(m.room, Some("r1"));
        assert_eq!(m.seq, Some(300));
        assert_eq!(m.data, Some(&b"hello"[..]));
        assert!(parse(&v[..v.len() - 1]).is_none());
    }

    #[test]
    fn parses_watch_and_lobby_fields() {
        // {"t":"joined","rid":3,"room":"w","members":[{"id":1}],"watch":true}
        let mut v = Vec::new();
        let _ = enc::write_map_len(&mut v, 5);
        kv_str(&mut v, "t", "joined");
        kv_uint(&mut v, "rid", 3);
        kv_str(&mut v, "room", "w");
        let _ = enc::write_str(&mut v, "members");
        let _ = enc::write_array_len(&mut v, 1);
        let _ = enc::write_map_len(&mut v, 1);
        kv_uint(&mut v, "id", 1);
        let _ = enc::write_str(&mut v, "watch");
        let _ = enc::write_bool(&mut v, true);
        let m = parse(&v).expect("parses");
        assert_eq!((m.t, m.watch, m.members), ("joined", Some(true), None));
        // {"t":"lobby","room":"r","members":300,"max":16,"state":"waiting","watchers":0}
        let mut v = Vec::new();
        let _ = enc::write_map_len(&mut v, 6);
        kv_str(&mut v, "t", "lobby");
        kv_str(&mut v, "room", "r");
        kv_uint(&mut v, "members", 300);
        kv_uint(&mut v, "max", 16);
        kv_str(&mut v, "state", "waiting");
        kv_uint(&mut v, "watchers", 0);
        let m = parse(&v).expect("parses");
        assert_eq!((m.room, m.members, m.gone), (Some("r"), Some(300), None));
        // {"t":"lobby","room":"r","gone":true}
        let mut v = Vec::new();
        let _ = enc::write_map_len(&mut v, 3);
        kv_str(&mut v, "t", "lobby");
        kv_str(&mut v, "room", "r");
        let _ = enc::write_str(&mut v, "gone");
        let _ = enc::write_bool(&mut v, true);
        assert_eq!(parse(&v).expect("parses").gone, Some(true));
        // {"t":"watchers","room":"r","n":70000}
        let mut v = Vec::new();
        let _ = enc::write_map_len(&mut v, 3);
        kv_str(&mut v, "t", "watchers");
        kv_str(&mut v, "room", "r");
        kv_uint(&mut v, "n", 70_000);
        assert_eq!(parse(&v).expect("parses").n, Some(70_000));
        // {"t":"rooms","rid":1,"rooms":[{..},{..}]}
        let mut v = Vec::new();
        let _ = enc::write_map_len(&mut v, 3);
        kv_str(&mut v, "t", "rooms");
        kv_uint(&mut v, "rid", 1);
        let _ = enc::write_str(&mut v, "rooms");
        let _ = enc::write_array_len(&mut v, 2);
        for r in ["a", "b"] {
            let _ = enc::write_map_len(&mut v, 2);
            kv_str(&mut v, "room", r);
            kv_uint(&mut v, "members", 0);
        }
        let m = parse(&v).expect("parses");
        assert_eq!((m.t, m.rooms, m.members), ("rooms", Some(2), None));
    }

    #[test]
    fn parses_welcome_closed_and_resumed() {
        // {"t":"welcome","id":7,"session":"01ab","hb_ms":5000,"worker":1}
        let mut v = Vec::new();
        let _ = enc::write_map_len(&mut v, 5);
        kv_str(&mut v, "t", "welcome");
        kv_uint(&mut v, "id", 7);
        kv_str(&mut v, "session", "01ab");
        kv_uint(&mut v, "hb_ms", 5000);
        kv_uint(&mut v, "worker", 1);
        let m = parse(&v).expect("parses");
        assert_eq!((m.session, m.worker), (Some("01ab"), Some(1)));
        // {"t":"closed","room":"r","why":"lost"}
        let mut v = Vec::new();
        let _ = enc::write_map_len(&mut v, 3);
        kv_str(&mut v, "t", "closed");
        kv_str(&mut v, "room", "r");
        kv_str(&mut v, "why", "lost");
        assert_eq!(parse(&v).expect("parses").why, Some("lost"));
        // {"t":"resumed","rid":4,"id":7,"rooms":{"a":{"recovered":true},"b":{"closed":"lost"}}}
        let mut v = Vec::new();
        let _ = enc::write_map_len(&mut v, 4);
        kv_str(&mut v, "t", "resumed");
        kv_uint(&mut v, "rid", 4);
        kv_uint(&mut v, "id", 7);
        let _ = enc::write_str(&mut v, "rooms");
        let _ = enc::write_map_len(&mut v, 2);
        let _ = enc::write_str(&mut v, "a");
        let _ = enc::write_map_len(&mut v, 1);
        let _ = enc::write_str(&mut v, "recovered");
        let _ = enc::write_bool(&mut v, true);
        let _ = enc::write_str(&mut v, "b");
        let _ = enc::write_map_len(&mut v, 1);
        kv_str(&mut v, "closed", "lost");
        let m = parse(&v).expect("parses");
        assert_eq!((m.t, m.rid), ("resumed", Some(4)));
        assert_eq!(
            resumed_rooms(&v),
            Some(vec![
                ("a", Resumed::Recovered(true)),
                ("b", Resumed::Closed("lost"))
            ])
        );
        let h = hello_resume(3, "01ab", &[("a", 12)]);
        let m = parse(&h).expect("parses");
        assert_eq!((m.t, m.rid), ("hello", Some(3)));
        let p = publish_echo(5, "a", b"xy");
        assert_eq!(parse(&p).expect("parses").data, Some(&b"xy"[..]));
    }

    #[test]
    fn requests_are_valid_maps() {
        let w = watch(5, "w1");
        let m = parse(&w).expect("parses");
        assert_eq!((m.t, m.rid, m.watch), ("join", Some(5), Some(true)));
        assert_eq!(parse(&lobby(6, 1000)).expect("parses").t, "lobby");
        assert_eq!(parse(&unlobby(7)).expect("parses").rid, Some(7));
        let c = create(9, "room-1", 10, 60_000, true);
        let m = parse(&c).expect("parses");
        assert_eq!((m.t, m.rid, m.room), ("create", Some(9), Some("room-1")));
        let p = publish("r", &[1, 2, 3], Some(4));
        let m = parse(&p).expect("parses");
        assert_eq!(
            (m.t, m.rid, m.data),
            ("pub", Some(4), Some(&[1u8, 2, 3][..]))
        );
    }
}
