//! What a resume replays of one room: the messages after the client's
//! `last`, when the history still holds them all and they fit the replay
//! budget (PROTOCOL.md "Reconnect and recovery").

use crate::history;
use crate::hub::out;
use crate::protocol::{self, Proto};
use crate::room::Room;

/// Bytes a replayed message is counted for against the replay budget: its
/// data (base64 on JSON connections, to be safe) plus the frame and keys.
pub fn replay_cost(data: &[u8], room: &str, proto: Proto) -> usize {
    let data = match proto {
        Proto::Msgpack => data.len(),
        Proto::Json => data.len().div_ceil(3) * 4,
    };
    data + room.len() + 64
}

/// One room's part of a resume: whether it is recovered, and if so its
/// missed messages appended to `out` as frames in `proto`. A room is
/// recovered when the client named its `last` seq, the history still holds
/// every message after it, and the replay fits in what is left of `budget`
/// (`used` so far, over every room of the resume; a replay alone never
/// makes the client a slow consumer). Nothing is appended or counted for a
/// room that is not recovered.
pub fn replay(
    room: &Room,
    last: Option<u64>,
    proto: Proto,
    budget: usize,
    used: &mut usize,
    out: &mut Vec<u8>,
) -> bool {
    let Some(last) = last else {
        return false;
    };
    let Some(missed) = history::since(room.history.as_deref(), last, room.seq) else {
        return false;
    };
    let cost: usize = missed
        .map(|(_, _, d)| replay_cost(d, &room.name, proto))
        .sum();
    if *used + cost > budget {
        return false;
    }
    *used += cost;
    for (seq, from, data) in history::since(room.history.as_deref(), last, room.seq)
        .into_iter()
        .flatten()
    {
        let m = out::msg(&room.name, from, seq, data);
        out.extend_from_slice(&protocol::encode_frame(proto, &m));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;

    /// A room that carried messages 1..=n ("m1", "m2", ...) with a history
    /// of the last `keep`.
    fn room(n: u64, keep: usize) -> Room {
        let rec = Recorder::new(keep, 1 << 20, 1 << 20);
        let mut r = Room::new("r", 1, 8, 60_000, false, false);
        for seq in 1..=n {
            r.seq = seq;
            rec.record(&mut r.history, seq, 7, format!("m{seq}").as_bytes());
        }
        r
    }

    /// The `seq`s of the frames in `out` (JSON, one `msg` each).
    fn seqs(out: &[u8]) -> Vec<u64> {
        let text = String::from_utf8_lossy(out);
        text.split("\"seq\":")
            .skip(1)
            .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect()
    }

    #[test]
    fn missed_messages_are_replayed_in_order() {
        let r = room(5, 8);
        let (mut used, mut out) = (0, Vec::new());
        assert!(replay(
            &r,
            Some(2),
            Proto::Json,
            1 << 20,
            &mut used,
            &mut out
        ));
        assert_eq!(seqs(&out), [3, 4, 5]);
        assert_eq!(used, 3 * replay_cost(b"m3", "r", Proto::Json));
    }

    #[test]
    fn nothing_missed_is_recovered_with_nothing_to_replay() {
        for r in [room(5, 8), room(0, 8), room(5, 0)] {
            let (mut used, mut out) = (0, Vec::new());
            assert!(replay(
                &r,
                Some(r.seq),
                Proto::Msgpack,
                0,
                &mut used,
                &mut out
            ));
            assert!(out.is_empty() && used == 0);
        }
    }

    #[test]
    fn not_recovered_without_last_past_the_history_or_beyond_seq() {
        let r = room(10, 4); // keeps 7..=10
        let (mut used, mut out) = (0, Vec::new());
        assert!(
            !replay(&r, None, Proto::Json, 1 << 20, &mut used, &mut out),
            "no last"
        );
        assert!(
            !replay(&r, Some(5), Proto::Json, 1 << 20, &mut used, &mut out),
            "6 is gone"
        );
        assert!(
            replay(&r, Some(6), Proto::Json, 1 << 20, &mut used, &mut out),
            "7.. kept"
        );
        out.clear();
        used = 0;
        assert!(
            !replay(&r, Some(11), Proto::Json, 1 << 20, &mut used, &mut out),
            "never sent"
        );
        assert!(out.is_empty() && used == 0);
    }

    #[test]
    fn a_replay_past_the_budget_is_not_recovered_and_costs_nothing() {
        let r = room(3, 8);
        let one = replay_cost(b"m1", "r", Proto::Msgpack);
        let (mut used, mut out) = (one, Vec::new());
        assert!(!replay(
            &r,
            Some(0),
            Proto::Msgpack,
            3 * one,
            &mut used,
            &mut out
        ));
        assert_eq!(
            (used, out.len()),
            (one, 0),
            "the budget spent by other rooms stays"
        );
        assert!(replay(
            &r,
            Some(0),
            Proto::Msgpack,
            4 * one,
            &mut used,
            &mut out
        ));
        assert_eq!(used, 4 * one);
    }

    #[test]
    fn json_data_costs_its_base64_size() {
        assert_eq!(replay_cost(&[0; 3], "ab", Proto::Json), 4 + 2 + 64);
        assert_eq!(replay_cost(&[0; 4], "ab", Proto::Json), 8 + 2 + 64);
        assert_eq!(replay_cost(&[0; 4], "ab", Proto::Msgpack), 4 + 2 + 64);
    }
}
