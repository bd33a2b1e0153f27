//! `roomd-bench summary DIR`: turns the `--json` reports of a bench.sh run
//! (`SERVER.SCENARIO.rROUND.json`) into `summary.md` (medians over rounds,
//! one column per server) and `chart-SCENARIO.svg` (deliveries/s against p99
//! latency of the `--find-max` steps of lat, thr and watch, one line per
//! server).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// (scenario, row label, JSON pointers joined by `|`, unit divisor, decimals)
#[rustfmt::skip]
const ROWS: &[(&str, &str, &str, f64, usize)] = &[
    ("lat", "max deliveries/s, p99 <= 10 ms", "/max_deliveries_per_s", 1.0, 0),
    ("lat", "  p99 at that rate (ms)", "/latency_us/p99", 1000.0, 2),
    ("thr", "max deliveries/s, p99 <= 50 ms", "/max_deliveries_per_s", 1.0, 0),
    ("thr", "  p99 at that rate (ms)", "/latency_us/p99", 1000.0, 2),
    ("seed", "deliveries/s at a fixed rate", "/deliveries_per_s", 1.0, 0),
    ("seed", "  p50 / p99 (ms)", "/latency_us/p50|/latency_us/p99", 1000.0, 2),
    ("seed", "  missing / errors", "/missing|/errors", 1.0, 0),
    ("light", "deliveries/s at a fixed rate", "/deliveries_per_s", 1.0, 0),
    ("light", "  p50 / p99 (ms)", "/latency_us/p50|/latency_us/p99", 1000.0, 3),
    ("idle", "server bytes per idle connection", "/bytes_per_conn", 1.0, 0),
    ("idle", "  connections / connect rate (/s)", "/conns|/connect_rate", 1.0, 0),
    ("rooms", "server bytes per room", "/bytes_per_room", 1.0, 0),
    ("rooms", "  rooms / rooms created per s", "/rooms|/rooms_per_s", 1.0, 0),
    ("churn", "cycles/s completed", "/ops_per_s", 1.0, 0),
    ("churn", "  cycle p50 / p99 (ms)", "/latency_us/p50|/latency_us/p99", 1000.0, 2),
    ("churn", "  join / leave p99 (ms)", "/ops_latency_us/join/p99|/ops_latency_us/leave/p99", 1000.0, 2),
    ("watch", "max deliveries/s to watchers, p99 <= 50 ms", "/max_deliveries_per_s", 1.0, 0),
    ("watch", "  join storm: s to seat all / messages per join", "/seat_all_s|/storm_frames_per_join", 1.0, 3),
    ("lobby", "lobby updates/s / bytes/s", "/lobby_updates_per_s|/lobby_bytes_per_s", 1.0, 0),
    ("lobby", "  server CPU per change, µs: subscribed / none", "/server_cpu_us_per_change|/baseline_cpu_us_per_change", 1.0, 1),
];

struct Run {
    server: String,
    scenario: String,
    v: Value,
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

pub fn run(dir: &Path) -> Result<(), String> {
    let mut runs = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let parts: Vec<&str> = stem.rsplitn(3, '.').collect();
        if parts.len() != 3 || !parts[0].starts_with('r') {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).map_err(|e| format!("{name}: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        runs.push(Run {
            server: parts[2].to_string(),
            scenario: parts[1].to_string(),
            v,
        });
    }
    if runs.is_empty() {
        return Err(format!(
            "no SERVER.SCENARIO.rN.json reports in {}",
            dir.display()
        ));
    }
    let mut servers: Vec<String> = Vec::new();
    for r in &runs {
        if !servers.contains(&r.server) {
            servers.push(r.server.clone());
        }
    }
    // roomd first, then the peers in name order.
    servers.sort_by_key(|s| (!s.starts_with("roomd"), s.clone()));

    let mut md = String::new();
    let machine = std::fs::read_to_string(dir.join("machine.txt")).unwrap_or_default();
    let _ = writeln!(md, "# roomd-bench results\n");
    for l in machine.lines() {
        let _ = writeln!(md, "- {l}");
    }
    let _ = writeln!(
        md,
        "\nMedians over rounds (servers interleaved within each round).\n"
    );
    let _ = write!(md, "| scenario | figure |");
    for s in &servers {
        let _ = write!(md, " {s} |");
    }
    let _ = write!(md, "\n|---|---|");
    for _ in &servers {
        let _ = write!(md, "---:|");
    }
    md.push('\n');
    for (sc, label, ptrs, div, dec) in ROWS {
        if !runs.iter().any(|r| r.scenario == *sc) {
            continue;
        }
        let _ = write!(md, "| {sc} | {label} |");
        for s in &servers {
            let cells: Vec<String> = ptrs
                .split('|')
                .map(|p| {
                    let xs: Vec<f64> = runs
                        .iter()
                        .filter(|r| r.scenario == *sc && &r.server == s)
                        .filter_map(|r| r.v.pointer(p).and_then(Value::as_f64))
                        .collect();
                    match median(xs) {
                        Some(x) => format!("{:.*}", *dec, x / div),
                        None => "–".into(),
                    }
                })
                .collect();
            let _ = write!(md, " {} |", cells.join(" / "));
        }
        md.push('\n');
    }
    for (label, pointer) in [
        ("CPU steal seen (%)", "/steal_pct"),
        ("load average at run end", "/load_avg_end"),
    ] {
        let _ = write!(md, "| all | {label} |");
        for s in &servers {
            let xs: Vec<f64> = runs
                .iter()
                .filter(|r| &r.server == s)
                .filter_map(|r| r.v.pointer(pointer).and_then(Value::as_f64))
                .collect();
            let _ = write!(
                md,
                " {} |",
                median(xs).map_or("–".into(), |x| format!("{x:.1}"))
            );
        }
        md.push('\n');
    }
    let mut errs = String::new();
    for r in &runs {
        let n = r.v.pointer("/errors").and_then(Value::as_u64).unwrap_or(0);
        if n > 0 {
            let kinds =
                r.v.pointer("/error_kinds")
                    .map(|k| k.to_string())
                    .unwrap_or_default();
            let _ = writeln!(errs, "- {} {}: {n} errors {kinds}", r.server, r.scenario);
        }
    }
    if !errs.is_empty() {
        let _ = writeln!(md, "\nErrors seen:\n\n{errs}");
    }
    for sc in ["lat", "thr", "watch"] {
        if let Some(svg) = chart(&runs, &servers, sc) {
            let name = format!("chart-{sc}.svg");
            std::fs::write(dir.join(&name), svg).map_err(|e| format!("{name}: {e}"))?;
            let _ = writeln!(md, "\n![{sc}]({name})");
        }
    }
    let path = dir.join("summary.md");
    std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    print!("{md}");
    Ok(())
}

/// Deliveries/s (x) against p99 (y, log scale) for the find-max steps of
/// each server's median round.
fn chart(runs: &[Run], servers: &[String], sc: &str) -> Option<String> {
    let colors = [
        "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    ];
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut budget = None;
    for s in servers {
        let mut rs: Vec<&Run> = runs
            .iter()
            .filter(|r| r.scenario == sc && &r.server == s)
            .collect();
        if rs.is_empty() {
            continue;
        }
        let key = |r: &&Run| {
            r.v.pointer("/max_deliveries_per_s")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        rs.sort_by(|a, b| key(a).total_cmp(&key(b)));
        let r = rs[rs.len() / 2];
        let argv =
            r.v.pointer("/params/argv")
                .and_then(Value::as_str)
                .unwrap_or("");
        let mut it = argv.split_whitespace();
        while let Some(a) = it.next() {
            if a == "--p99-budget-ms" {
                budget = it.next().and_then(|x| x.parse::<f64>().ok());
            }
        }
        // (offered rate, delivered/s, p99 ms), drawn in order of offered
        // load: past saturation a server delivers less at a higher p99, and
        // the line bends back (the usual overload hook) instead of zigzagging.
        let mut pts: Vec<(f64, f64, f64)> =
            r.v.pointer("/steps")
                .and_then(Value::as_array)?
                .iter()
                .filter_map(|st| {
                    let rate = st.get("rate")?.as_f64()?;
                    let x = st.get("deliveries_per_s")?.as_f64()?;
                    let y = st.get("p99_us")?.as_f64()? / 1000.0;
                    Some((rate, x, y.max(0.01)))
                })
                .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push((s.clone(), pts.into_iter().map(|(_, x, y)| (x, y)).collect()));
    }
    if lines.is_empty() {
        return None;
    }
    let (w, h, ml, mr, mt, mb) = (720.0, 420.0, 70.0, 150.0, 30.0, 50.0);
    let xmax = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.0))
        .fold(1.0, f64::max)
        * 1.05;
    let ymax = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        .max(budget.unwrap_or(1.0));
    let (lo, hi) = (0.1f64.log10(), (ymax * 1.5).log10());
    let px = |x: f64| ml + x / xmax * (w - ml - mr);
    let py = |y: f64| mt + (1.0 - (y.max(0.1).log10() - lo) / (hi - lo)) * (h - mt - mb);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{ml}" y="18" font-size="14">{sc}: deliveries/s against p99 latency (find-max steps)</text>"#
    );
    // Axes, ticks.
    let _ = writeln!(
        s,
        r#"<path d="M{ml} {mt} V{} H{}" stroke="black" fill="none"/>"#,
        h - mb,
        w - mr
    );
    // Ticks at a round step (1, 2 or 5 times a power of ten).
    let raw = xmax / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    let ticks = (xmax / step).floor() as usize;
    for i in 0..=ticks {
        let x = step * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            px(x),
            h - mb + 18.0,
            if x >= 1e6 {
                format!("{:.2}M", x / 1e6)
            } else if x >= 1e4 || x == 0.0 {
                format!("{:.0}k", x / 1e3)
            } else {
                format!("{:.1}k", x / 1e3)
            }
        );
    }
    let mut t = 0.1;
    while t <= ymax * 1.5 {
        let _ = writeln!(
            s,
            r##"<line x1="{ml}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{t} ms</text>"##,
            w - mr,
            ml - 6.0,
            py(t) + 4.0,
            y = py(t)
        );
        t *= 10.0;
    }
    if let Some(b) = budget {
        let _ = writeln!(
            s,
            r##"<line x1="{ml}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#999" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="#666">p99 budget {b} ms</text>"##,
            w - mr,
            ml + 6.0,
            py(b) - 5.0,
            y = py(b)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">deliveries/s</text>"#,
        (ml + w - mr) / 2.0,
        h - 12.0
    );
    for (i, (name, pts)) in lines.iter().enumerate() {
        let c = colors[i % colors.len()];
        let d: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            d.join(" ")
        );
        for (x, y) in pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                px(*x),
                py(*y)
            );
        }
        let ly = mt + 20.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            w - mr + 10.0,
            w - mr + 30.0,
            w - mr + 36.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    Some(s)
}
