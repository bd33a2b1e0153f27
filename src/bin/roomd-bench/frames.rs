//! Reading server-to-client WebSocket frames (RFC 6455 section 5) straight
//! out of one per-connection buffer.
//!
//! Why not tungstenite's reader: it zero-fills its whole read buffer before
//! every `read` call (a 64 KiB memset per call, a quarter of the harness's
//! CPU at 500k deliveries/s) and allocates a `Bytes` per frame. Here the
//! buffer is zeroed once when allocated, one `read` takes in as many frames
//! as fit, and each frame is handed out as a slice of the buffer. Writing
//! (masking, pong and close replies) stays with tungstenite's
//! `WebSocketContext`.
//!
//! "A server MUST NOT mask any frames that it sends to the client. A client
//! MUST close a connection if it detects a masked frame." (5.1) Control
//! frames have at most 125 bytes of payload and are never fragmented (5.5);
//! they may arrive between the fragments of a data message (5.4).

use std::io::{self, Read};

/// Largest frame or reassembled message accepted.
pub const MAX_MESSAGE: usize = 16 << 20;

/// One complete frame or message, borrowed from the reader.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        binary: bool,
        payload: &'a [u8],
    },
    Ping(&'a [u8]),
    Pong,
    /// Close with its status code (1005 when the frame carries none).
    Close(u16),
}

/// Where the next frame's payload lies, once its header is parsed.
struct Head {
    fin: bool,
    opcode: u8,
    start: usize,
    end: usize,
}

#[derive(Default)]
pub struct Reader {
    buf: Vec<u8>,
    /// Unparsed bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// A fragmented data message being reassembled: (binary, bytes so far).
    frag: Option<(bool, Vec<u8>)>,
    /// The message last reassembled (kept so a `Frame` can borrow it).
    whole: Vec<u8>,
}

impl Reader {
    /// A reader with a `size`-byte buffer (zeroed once), seeded with bytes
    /// already read past the HTTP reply head.
    pub fn new(size: usize, seed: &[u8]) -> Reader {
        let mut buf = vec![0u8; size.max(seed.len()).max(256)];
        buf[..seed.len()].copy_from_slice(seed);
        Reader {
            buf,
            pos: 0,
            end: seed.len(),
            frag: None,
            whole: Vec::new(),
        }
    }

    /// Parses the header at `pos`; None when it is not complete yet.
    fn head(&self) -> Result<Option<Head>, String> {
        let b = &self.buf[self.pos..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err("frame with reserved bits set".into());
        }
        let opcode = b[0] & 0x0f;
        if b[1] & 0x80 != 0 {
            return Err("masked frame from the server".into());
        }
        let (len, hlen) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([b[2], b[3]]) as u64, 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                let mut x = [0u8; 8];
                x.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(x), 10)
            }
            n => (n as u64, 2),
        };
        if len > MAX_MESSAGE as u64 {
            return Err(format!("frame of {len} bytes (limit {MAX_MESSAGE})"));
        }
        let start = self.pos + hlen;
        Ok(Some(Head {
            fin,
            opcode,
            start,
            end: start + len as usize,
        }))
    }

    /// The next complete frame or message in the buffer, or None when more
    /// bytes are needed (then call `fill`).
    pub fn next(&mut self) -> Result<Option<Frame<'_>>, String> {
        loop {
            let Some(h) = self.head()? else {
                return Ok(None);
            };
            if h.end > self.end {
                return Ok(None);
            }
            self.pos = h.end;
            let (s, e) = (h.start, h.end);
            match h.opcode {
                0x1 | 0x2 => {
                    if self.frag.is_some() {
                        return Err("new data frame inside a fragmented message".into());
                    }
                    if h.fin {
                        return Ok(Some(Frame::Data {
                            binary: h.opcode == 0x2,
                            payload: &self.buf[s..e],
                        }));
                    }
                    self.frag = Some((h.opcode == 0x2, self.buf[s..e].to_vec()));
                }
                0x0 => {
                    let Some((binary, mut acc)) = self.frag.take() else {
                        return Err("continuation frame without a message".into());
                    };
                    if acc.len() + (e - s) > MAX_MESSAGE {
                        return Err("fragmented message too large".into());
                    }
                    acc.extend_from_slice(&self.buf[s..e]);
                    if h.fin {
                        self.whole = acc;
                        return Ok(Some(Frame::Data {
                            binary,
                            payload: &self.whole,
                        }));
                    }
                    self.frag = Some((binary, acc));
                }
                0x8..=0xa => {
                    if !h.fin || e - s > 125 {
                        return Err("fragmented or oversized control frame".into());
                    }
                    return Ok(Some(match h.opcode {
                        0x8 => {
                            let p = &self.buf[s..e];
                            Frame::Close(if p.len() >= 2 {
                                u16::from_be_bytes([p[0], p[1]])
                            } else {
                                1005
                            })
                        }
                        0x9 => Frame::Ping(&self.buf[s..e]),
                        _ => Frame::Pong,
                    }));
                }
                op => return Err(format!("unknown opcode {op:#x}")),
            }
        }
    }

    /// Reads once from `r` into the free end of the buffer, first moving an
    /// incomplete frame to the front (and growing the buffer when that frame
    /// is larger than it). Returns what `read` returned (0 = EOF) and
    /// whether it filled all the space offered: a short read means the
    /// socket was drained, so with edge-triggered polling the caller need
    /// not read again until the next readiness edge (as nginx does).
    pub fn fill<R: Read>(&mut self, r: &mut R) -> io::Result<(usize, bool)> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() || self.buf.len() - self.end < 512 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            // One frame larger than the buffer: make room for all of it.
            let need = match self.head() {
                Ok(Some(h)) => h.end - h.start + 14,
                _ => self.buf.len() * 2,
            };
            self.buf.resize(need.max(self.buf.len() * 2), 0);
        }
        let space = self.buf.len() - self.end;
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok((n, n == space))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that returns its chunks one `read` at a time, then WouldBlock.
    struct Chunks(Vec<Vec<u8>>);

    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let c = &mut self.0[0];
            let n = c.len().min(out.len());
            out[..n].copy_from_slice(&c[..n]);
            c.drain(..n);
            if c.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | op];
        match payload.len() {
            n if n < 126 => v.push(n as u8),
            n if n < 65536 => {
                v.push(126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    /// Drains every frame the stream yields, as owned values.
    fn all(rd: &mut Reader, s: &mut Chunks) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            while let Some(f) = rd.next().expect("valid frames") {
                out.push(match f {
                    Frame::Data { binary, payload } => (binary as u8 + 1, payload.to_vec()),
                    Frame::Ping(p) => (9, p.to_vec()),
                    Frame::Pong => (10, vec![]),
                    Frame::Close(c) => (8, c.to_be_bytes().to_vec()),
                });
            }
            match rd.fill(s) {
                Ok((0, _)) => return out,
                Ok(_) => {}
                Err(_) => return out,
            }
        }
    }

    #[test]
    fn many_frames_split_anywhere() {
        let mut bytes = Vec::new();
        for i in 0..200u32 {
            bytes.extend(frame(
                true,
                2,
                &i.to_le_bytes().repeat(1 + (i as usize % 40)),
            ));
        }
        bytes.extend(frame(true, 9, b"hb"));
        let big = vec![7u8; 100_000];
        bytes.extend(frame(true, 2, &big));
        // Cut into uneven chunks, some splitting headers.
        let chunks: Vec<Vec<u8>> = bytes.chunks(333).map(|c| c.to_vec()).collect();
        let mut rd = Reader::new(1024, &[]);
        let got = all(&mut rd, &mut Chunks(chunks));
        assert_eq!(got.len(), 202);
        for (i, (op, p)) in got.iter().take(200).enumerate() {
            assert_eq!(*op, 2);
            assert_eq!(p, &(i as u32).to_le_bytes().repeat(1 + i % 40));
        }
        assert_eq!(got[200], (9, b"hb".to_vec()));
        assert_eq!(got[201].1, big);
    }

    #[test]
    fn fragments_with_a_ping_between() {
        let mut bytes = frame(false, 1, b"hel");
        bytes.extend(frame(true, 9, b""));
        bytes.extend(frame(false, 0, b"lo "));
        bytes.extend(frame(true, 0, b"world"));
        bytes.extend(frame(true, 8, &1001u16.to_be_bytes()));
        let mut rd = Reader::new(256, &bytes);
        let got = all(&mut rd, &mut Chunks(vec![]));
        assert_eq!(
            got,
            vec![
                (9, vec![]),
                (1, b"hello world".to_vec()),
                (8, 1001u16.to_be_bytes().to_vec())
            ]
        );
    }

    #[test]
    fn rejects_masked_and_bad_frames() {
        let mut masked = frame(true, 2, b"x");
        masked[1] |= 0x80;
        assert!(Reader::new(256, &masked).next().is_err());
        assert!(Reader::new(256, &frame(true, 0, b"x")).next().is_err());
        assert!(Reader::new(256, &frame(false, 9, b"")).next().is_err());
        assert!(Reader::new(256, &frame(true, 3, b"")).next().is_err());
    }
}
