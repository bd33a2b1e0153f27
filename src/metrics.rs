//! Counters of one worker and their Prometheus text rendering. Counters are
//! plain integers bumped by the loop (one thread, no atomics); gauges are
//! read from the arenas when `/metrics` is rendered.

use std::fmt::Write;
use std::time::Duration;

use crate::conn::CloseReason;
use crate::protocol::Code;

/// Upper bounds (µs) of the loop-turn histogram buckets.
const TURN_BUCKETS_US: [u64; 12] = [
    20, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

#[derive(Default)]
pub struct Metrics {
    pub accepted: u64,
    pub upgrades: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub published: u64,
    pub deliveries: u64,
    pub closes: [u64; CloseReason::ALL.len()],
    /// Earlier lives of this worker (under a supervisor) that ended: died
    /// on their own, or killed as hung (`--hung-ms`).
    pub restarts: (u64, u64),
    /// Upgrades handed to the room's home (`out`), taken from another
    /// worker (`in`), and served here because the home could not take them
    /// (`refused`).
    pub moves: [u64; 3],
    pub errors: [u64; Code::ALL.len()],
    turn_buckets: [u64; TURN_BUCKETS_US.len() + 1],
    turn_sum_us: u64,
    turn_count: u64,
}

/// Gauges the worker reads from its arenas at render time.
pub struct Gauges {
    pub worker: u32,
    pub connections: usize,
    pub sessions: usize,
    /// Sessions a `resume` can find (entries of the token index).
    pub tokens: usize,
    /// Sessions of tokens issued here that moved to another worker (where
    /// a resume is sent on to).
    pub moved: usize,
    /// Places in matchmaking queues homed on this worker.
    pub places: usize,
    /// Attached watchers of rooms homed on this worker.
    pub watchers: u64,
    /// Lobby subscriptions of this worker's sessions.
    pub lobby_subs: usize,
    /// Queries to other workers waiting for their answers.
    pub queries: usize,
    pub rooms: usize,
    pub members: usize,
    pub timers: usize,
    /// The bus, with several workers.
    pub bus: Option<BusGauges>,
}

/// Bus figures (see `bus`).
pub struct BusGauges {
    pub links: u64,
    pub shadows: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub peers_lost: u64,
}

/// Several workers' renderings as one exposition: each family's `# HELP` and
/// `# TYPE` once, then its samples from every worker (their `worker` labels
/// keep them apart), families in the order they first appear.
pub fn merge(texts: &[String]) -> String {
    // (family name, header lines, sample lines)
    let mut fams: Vec<(&str, Vec<&str>, Vec<&str>)> = Vec::new();
    for t in texts {
        let mut cur: Option<usize> = None;
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                let i = match fams.iter().position(|f| f.0 == name) {
                    Some(i) => i,
                    None => {
                        fams.push((name, vec![line], Vec::new()));
                        fams.len() - 1
                    }
                };
                cur = Some(i);
            } else if line.starts_with('#') {
                if let Some(f) = cur.and_then(|i| fams.get_mut(i)) {
                    if !f.1.contains(&line) {
                        f.1.push(line);
                    }
                }
            } else if !line.is_empty() {
                if let Some(f) = cur.and_then(|i| fams.get_mut(i)) {
                    f.2.push(line);
                }
            }
        }
    }
    let mut out = String::new();
    for (_, head, samples) in fams {
        for l in head.iter().chain(&samples) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

impl Metrics {
    pub fn turn(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = TURN_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(TURN_BUCKETS_US.len());
        self.turn_buckets[i] += 1;
        self.turn_sum_us += us;
        self.turn_count += 1;
    }

    pub fn error(&mut self, c: Code) {
        if let Some(i) = Code::ALL.iter().position(|&x| x == c) {
            self.errors[i] += 1;
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, g: &Gauges) -> String {
        let mut s = String::with_capacity(4096);
        let w = g.worker;
        let gauge = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{worker=\"{w}\"}} {v}"
            );
        };
        gauge(
            &mut s,
            "roomd_connections",
            "Open TCP connections (HTTP and WebSocket).",
            g.connections as u64,
        );
        gauge(
            &mut s,
            "roomd_sessions",
            "Sessions, attached or within their grace period.",
            g.sessions as u64,
        );
        gauge(
            &mut s,
            "roomd_resume_tokens",
            "Resume tokens that name a live session (attached or within grace).",
            g.tokens as u64,
        );
        gauge(
            &mut s,
            "roomd_moved_sessions",
            "Sessions of resume tokens issued by this worker that live on another worker now.",
            g.moved as u64,
        );
        gauge(
            &mut s,
            "roomd_queue_places",
            "Places in matchmaking queues homed on this worker.",
            g.places as u64,
        );
        gauge(
            &mut s,
            "roomd_watchers",
            "Watchers with a connection, of rooms homed on this worker.",
            g.watchers,
        );
        gauge(
            &mut s,
            "roomd_lobby_subscribers",
            "Lobby subscriptions of this worker's sessions.",
            g.lobby_subs as u64,
        );
        gauge(
            &mut s,
            "roomd_pending_queries",
            "Queries to other workers (list, GET /rooms, /metrics/all, API calls) awaiting answers.",
            g.queries as u64,
        );
        gauge(
            &mut s,
            "roomd_rooms",
            "Rooms homed on this worker.",
            g.rooms as u64,
        );
        gauge(
            &mut s,
            "roomd_members",
            "Seats in rooms on this worker.",
            g.members as u64,
        );
        gauge(&mut s, "roomd_timers", "Armed timers.", g.timers as u64);
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{worker=\"{w}\"}} {v}"
            );
        };
        counter(
            &mut s,
            "roomd_accepted_total",
            "TCP connections accepted.",
            self.accepted,
        );
        counter(
            &mut s,
            "roomd_upgrades_total",
            "WebSocket upgrades completed.",
            self.upgrades,
        );
        counter(
            &mut s,
            "roomd_messages_in_total",
            "WebSocket messages received.",
            self.messages_in,
        );
        counter(
            &mut s,
            "roomd_bytes_in_total",
            "Bytes read from clients.",
            self.bytes_in,
        );
        counter(
            &mut s,
            "roomd_bytes_out_total",
            "Bytes written to clients.",
            self.bytes_out,
        );
        counter(
            &mut s,
            "roomd_published_total",
            "Messages published to rooms.",
            self.published,
        );
        counter(
            &mut s,
            "roomd_deliveries_total",
            "Room messages queued to recipients.",
            self.deliveries,
        );
        let _ = writeln!(s, "# HELP roomd_closes_total Connections ended, by reason.\n# TYPE roomd_closes_total counter");
        for r in CloseReason::ALL {
            let _ = writeln!(
                s,
                "roomd_closes_total{{worker=\"{w}\",reason=\"{}\"}} {}",
                r.label(),
                self.closes[r.index()]
            );
        }
        let _ = writeln!(s, "# HELP roomd_errors_total Error replies sent, by code.\n# TYPE roomd_errors_total counter");
        for (i, c) in Code::ALL.iter().enumerate() {
            let _ = writeln!(
                s,
                "roomd_errors_total{{worker=\"{w}\",code=\"{}\"}} {}",
                c.as_str(),
                self.errors[i]
            );
        }
        if let Some(b) = &g.bus {
            let _ = writeln!(
                s,
                "# HELP roomd_moves_total Connections moved to the worker that homes their room, by result.\n# TYPE roomd_moves_total counter"
            );
            for (i, r) in ["out", "in", "refused"].iter().enumerate() {
                let _ = writeln!(
                    s,
                    "roomd_moves_total{{worker=\"{w}\",result=\"{r}\"}} {}",
                    self.moves[i]
                );
            }
            let _ = writeln!(
                s,
                "# HELP roomd_worker_restarts_total Times the supervisor restarted this worker, by how its last life ended (died, or killed as hung).\n# TYPE roomd_worker_restarts_total counter\nroomd_worker_restarts_total{{worker=\"{w}\",reason=\"died\"}} {}\nroomd_worker_restarts_total{{worker=\"{w}\",reason=\"hung\"}} {}",
                self.restarts.0, self.restarts.1
            );
            gauge(
                &mut s,
                "roomd_bus_links",
                "Links up to other workers.",
                b.links,
            );
            gauge(
                &mut s,
                "roomd_bus_shadow_sessions",
                "Sessions of other workers seated in rooms homed here.",
                b.shadows,
            );
            for (name, help, v) in [
                (
                    "roomd_bus_bytes_in_total",
                    "Bytes read from other workers.",
                    b.bytes_in,
                ),
                (
                    "roomd_bus_bytes_out_total",
                    "Bytes written to other workers.",
                    b.bytes_out,
                ),
                (
                    "roomd_bus_messages_in_total",
                    "Messages from other workers.",
                    b.msgs_in,
                ),
                (
                    "roomd_bus_messages_out_total",
                    "Messages queued for other workers.",
                    b.msgs_out,
                ),
                (
                    "roomd_bus_peers_lost_total",
                    "Links to other workers lost (a worker died, or was too slow).",
                    b.peers_lost,
                ),
            ] {
                counter(&mut s, name, help, v);
            }
        }
        let _ = writeln!(s, "# HELP roomd_loop_turn_seconds Time the loop spent per turn, sleep excluded.\n# TYPE roomd_loop_turn_seconds histogram");
        let mut cum = 0;
        for (i, b) in TURN_BUCKETS_US.iter().enumerate() {
            cum += self.turn_buckets[i];
            let _ = writeln!(
                s,
                "roomd_loop_turn_seconds_bucket{{worker=\"{w}\",le=\"{}\"}} {cum}",
                *b as f64 / 1e6
            );
        }
        cum += self.turn_buckets[TURN_BUCKETS_US.len()];
        let _ = writeln!(
            s,
            "roomd_loop_turn_seconds_bucket{{worker=\"{w}\",le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(
            s,
            "roomd_loop_turn_seconds_sum{{worker=\"{w}\"}} {}",
            self.turn_sum_us as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "roomd_loop_turn_seconds_count{{worker=\"{w}\"}} {}",
            self.turn_count
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let mut m = Metrics::default();
        m.turn(Duration::from_micros(10));
        m.turn(Duration::from_micros(300));
        m.turn(Duration::from_secs(1));
        let g = Gauges {
            worker: 0,
            connections: 1,
            sessions: 0,
            tokens: 0,
            moved: 0,
            places: 0,
            watchers: 0,
            lobby_subs: 0,
            queries: 0,
            rooms: 0,
            members: 0,
            timers: 0,
            bus: None,
        };
        let s = m.render(&g);
        let two = merge(&[s.clone(), s.replace("worker=\"0\"", "worker=\"1\"")]);
        assert_eq!(two.matches("# TYPE roomd_connections gauge").count(), 1);
        assert!(
            two.contains("roomd_connections{worker=\"0\"} 1\nroomd_connections{worker=\"1\"} 1\n")
        );

        assert!(s.contains("roomd_loop_turn_seconds_bucket{worker=\"0\",le=\"0.00002\"} 1"));
        assert!(s.contains("roomd_loop_turn_seconds_bucket{worker=\"0\",le=\"0.0005\"} 2"));
        assert!(s.contains("roomd_loop_turn_seconds_bucket{worker=\"0\",le=\"+Inf\"} 3"));
        assert!(s.contains("roomd_loop_turn_seconds_count{worker=\"0\"} 3"));
        assert!(s.contains("roomd_connections{worker=\"0\"} 1"));
    }
}
