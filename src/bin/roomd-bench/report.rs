//! The end of a run: the human table on stdout and the `--json` file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::ctl::fmt_us;
use crate::stats::{LatSummary, Stats};

/// One `--find-max` step.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub rate: f64,
    pub deliveries_per_s: f64,
    pub expected: u64,
    pub delivered: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub errors: u64,
    pub held: bool,
}

/// Everything a run reports. Field names are the JSON keys.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub label: String,
    pub proto: String,
    pub url: String,
    pub procs: usize,
    pub conns: u64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub connect_failed: u64,
    pub duration_s: f64,
    pub deliveries_per_s: f64,
    pub latency_us: LatSummary,
    pub ops_latency_us: BTreeMap<String, LatSummary>,
    pub server_rss_before: Option<u64>,
    pub server_rss_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_conn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_room: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// --find-max: highest rate that held, in messages/s and deliveries/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deliveries_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    /// watch: watchers seated by the join storm, and the time from the first
    /// `join` sent to the last `joined` received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat_all_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joins_per_s: Option<f64>,
    /// watch: each watcher's `join` to `joined`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_latency_us: Option<LatSummary>,
    /// watch: frames received by all clients during the storm (up to the
    /// last `joined`), per watcher seated, and by type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm_frames_per_join: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub storm_frames: BTreeMap<String, u64>,
    /// watch: frames received in the settle time after the last `joined`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm_frames_after: Option<u64>,
    /// watch: every client's last `watchers` count was the number seated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchers_count_ok: Option<bool>,
    /// lobby: the subscriber's snapshot (rooms listed, bytes, time to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lobby_snapshot_rooms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lobby_snapshot_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lobby_snapshot_ms: Option<f64>,
    /// lobby: room changes made (acknowledged joins and leaves) per second,
    /// and what the subscriber received per second in the same window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_changes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lobby_updates_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lobby_bytes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lobby_updates_per_change: Option<f64>,
    /// lobby: from a change's acknowledgement to the first update showing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lobby_delay_us: Option<LatSummary>,
    /// lobby: server CPU time (all its processes, user + system) per room
    /// change with the subscriber, per update it received, and per change
    /// with no subscriber (the baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_change: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_update: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_cpu_us_per_change: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_changes_per_s: Option<f64>,
    /// faults: what the workers' deaths and stops cost the clients, and
    /// what the server held after they left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<crate::faults::FaultsReport>,
    /// Figures that must be 0 and were not (the run exits 1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// CPU time the host stole from this VM during the run, percent.
    pub steal_pct: f64,
    /// 1-minute load average at the start and end of the run (other work on
    /// the machine shows up here).
    pub load_avg_start: f64,
    pub load_avg_end: f64,
    pub params: BTreeMap<String, String>,
}

impl Report {
    /// Fills the delivery and latency fields from merged stats.
    pub fn take_stats(&mut self, s: &Stats, duration_s: f64) {
        self.sent = s.sent;
        self.expected = s.expected;
        self.delivered = s.delivered;
        self.missing = s.missing();
        self.duplicated = s.duplicated;
        self.reordered = s.reordered;
        self.errors = s.error_count();
        self.error_kinds = s.errors.clone();
        self.duration_s = duration_s;
        self.deliveries_per_s = if duration_s > 0.0 {
            s.delivered as f64 / duration_s
        } else {
            0.0
        };
        self.latency_us = s.lat.summary();
        self.ops_latency_us = s
            .ops
            .iter()
            .map(|(k, v)| (k.clone(), v.summary()))
            .collect();
    }

    /// The human table.
    pub fn print(&self) {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        row(
            "scenario",
            format!(
                "{} ({}{})",
                self.scenario,
                self.proto,
                if self.label.is_empty() {
                    String::new()
                } else {
                    format!(", {}", self.label)
                }
            ),
        );
        row("url", self.url.clone());
        row(
            "connections",
            format!("{} ({} processes)", self.conns, self.procs),
        );
        if self.connect_failed > 0 {
            row("connect failures", self.connect_failed.to_string());
        }
        if let Some(r) = self.connect_rate {
            row("connect rate", format!("{r:.0} conns/s"));
        }
        if self.sent > 0 || self.expected > 0 {
            row("sent", self.sent.to_string());
            row("expected deliveries", self.expected.to_string());
            row("delivered", self.delivered.to_string());
            row(
                "missing / dup / reordered",
                format!(
                    "{} / {} / {}",
                    self.missing, self.duplicated, self.reordered
                ),
            );
        }
        row("duration", format!("{:.2} s", self.duration_s));
        if self.deliveries_per_s > 0.0 {
            row("deliveries/s", format!("{:.0}", self.deliveries_per_s));
        }
        if let Some(r) = self.rooms {
            row("rooms made", r.to_string());
        }
        if let Some(r) = self.rooms_per_s {
            row("rooms/s", format!("{r:.0}"));
        }
        if let Some(r) = self.ops_per_s {
            row("cycles/s", format!("{r:.0}"));
        }
        let l = &self.latency_us;
        if l.count > 0 {
            row(
                "latency p50/p90/p99",
                format!("{} / {} / {}", fmt_us(l.p50), fmt_us(l.p90), fmt_us(l.p99)),
            );
            row(
                "latency p99.9 / max",
                format!("{} / {}", fmt_us(l.p999), fmt_us(l.max)),
            );
        }
        for (k, l) in &self.ops_latency_us {
            row(
                &format!("{k} p50/p99/max"),
                format!("{} / {} / {}", fmt_us(l.p50), fmt_us(l.p99), fmt_us(l.max)),
            );
        }
        if let (Some(a), Some(b)) = (self.server_rss_before, self.server_rss_after) {
            row(
                "server RSS before/after",
                format!(
                    "{:.1} / {:.1} MiB",
                    a as f64 / 1048576.0,
                    b as f64 / 1048576.0
                ),
            );
        }
        if let Some(b) = self.bytes_per_conn {
            row("server bytes/conn", format!("{b:.0}"));
        }
        if let Some(b) = self.bytes_per_room {
            row("server bytes/room", format!("{b:.0}"));
        }
        if !self.steps.is_empty() {
            for s in &self.steps {
                row(
                    &format!("step {:.0} msg/s", s.rate),
                    format!(
                        "{:.0} deliv/s  p50 {}  p99 {}  max {}  {}/{}  err {}  {}",
                        s.deliveries_per_s,
                        fmt_us(s.p50_us),
                        fmt_us(s.p99_us),
                        fmt_us(s.max_us),
                        s.delivered,
                        s.expected,
                        s.errors,
                        if s.held { "held" } else { "FAILED" }
                    ),
                );
            }
        }
        if let Some(n) = self.watchers {
            row(
                "join storm",
                format!(
                    "{n} watchers seated in {:.3} s ({:.0} joins/s)",
                    self.seat_all_s.unwrap_or(0.0),
                    self.joins_per_s.unwrap_or(0.0)
                ),
            );
        }
        if let Some(l) = &self.join_latency_us {
            row(
                "  join p50/p99/max",
                format!("{} / {} / {}", fmt_us(l.p50), fmt_us(l.p99), fmt_us(l.max)),
            );
        }
        if let Some(f) = self.storm_frames_per_join {
            let by: Vec<String> = self
                .storm_frames
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            row(
                "  server messages per join",
                format!("{f:.3} ({})", by.join(", ")),
            );
        }
        if let Some(n) = self.storm_frames_after {
            row("  messages in the settle time", n.to_string());
        }
        if let Some(ok) = self.watchers_count_ok {
            row(
                "  last watchers count",
                if ok {
                    "= seated, at every client"
                } else {
                    "WRONG at some client"
                }
                .into(),
            );
        }
        if let Some(n) = self.lobby_snapshot_rooms {
            row(
                "lobby snapshot",
                format!(
                    "{n} rooms, {} bytes, in {:.2} ms",
                    self.lobby_snapshot_bytes.unwrap_or(0),
                    self.lobby_snapshot_ms.unwrap_or(0.0)
                ),
            );
        }
        if let Some(r) = self.room_changes_per_s {
            row("room changes/s", format!("{r:.0}"));
        }
        if let Some(r) = self.lobby_updates_per_s {
            row(
                "lobby updates/s",
                format!(
                    "{r:.0} ({:.3} per change)",
                    self.lobby_updates_per_change.unwrap_or(0.0)
                ),
            );
        }
        if let Some(r) = self.lobby_bytes_per_s {
            row("lobby bytes/s", format!("{r:.0}"));
        }
        if let Some(l) = &self.lobby_delay_us {
            row(
                "lobby delay p50/p99/max",
                format!("{} / {} / {}", fmt_us(l.p50), fmt_us(l.p99), fmt_us(l.max)),
            );
        }
        if let Some(c) = self.server_cpu_us_per_change {
            row("server CPU per change", format!("{c:.1} µs"));
        }
        if let Some(c) = self.server_cpu_us_per_update {
            row("server CPU per update", format!("{c:.1} µs"));
        }
        if let Some(c) = self.baseline_cpu_us_per_change {
            row(
                "  with no subscriber",
                format!(
                    "{c:.1} µs per change ({:.0} changes/s)",
                    self.baseline_changes_per_s.unwrap_or(0.0)
                ),
            );
        }
        if let Some(m) = self.max_rate {
            row(
                "max rate held",
                format!(
                    "{m:.0} msg/s = {:.0} deliveries/s",
                    self.max_deliveries_per_s.unwrap_or(0.0)
                ),
            );
        }
        if let Some(f) = &self.faults {
            f.rows(&mut row);
        }
        row("errors", self.errors.to_string());
        for (k, v) in &self.error_kinds {
            row(&format!("  {k}"), v.to_string());
        }
        for f in &self.failed {
            row("FAILED", f.clone());
        }
        row("cpu steal", format!("{:.1} %", self.steal_pct));
        row(
            "load average start/end",
            format!("{:.2} / {:.2}", self.load_avg_start, self.load_avg_end),
        );
        let w = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        println!();
        for (k, v) in rows {
            println!("  {k:<w$}  {v}");
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        let s = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, s + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}
