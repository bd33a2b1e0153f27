//! `--find-max`: the search for the highest publish rate whose p99 stays
//! within budget with at least 99.9 % of the deliveries made, shared by
//! `fanout` and `watch`.
//!
//! The rate grows by `--step-factor` until a step fails, then bisects
//! between the best rate that held and the lowest that failed until they
//! are within 5 %. The host steals CPU at times, so a failing rate is run a
//! second time before it counts as failed. A step that lost connections
//! makes the caller rebuild its set before the next one.

use crate::ctl::{fmt_us, Fleet, PhaseResult};
use crate::report::{Report, StepReport};

/// The search's parameters.
pub struct Search {
    /// First rate, messages/s.
    pub rate: f64,
    pub step_factor: f64,
    pub max_steps: usize,
    pub p99_budget_ms: f64,
    /// Seconds measured per step.
    pub duration: f64,
    /// Deliveries one message makes (for the progress line).
    pub deliveries_per_msg: f64,
}

/// What the search found: the best step that held (with its rate), and
/// the last step run (reported when none held).
#[derive(Default)]
pub struct Found {
    pub best: Option<(f64, PhaseResult)>,
    pub last: Option<PhaseResult>,
}

impl Found {
    /// Fills the report's delivery figures and `max_rate` from the best
    /// step (or the last one, with a maximum of 0, when none held).
    pub fn fill(self, report: &mut Report, duration: f64) {
        match self.best {
            Some((rate, r)) => {
                report.take_stats(&r.stats, duration);
                report.max_rate = Some(rate);
                report.max_deliveries_per_s = Some(r.stats.delivered as f64 / duration);
            }
            None => {
                if let Some(r) = self.last {
                    report.take_stats(&r.stats, duration);
                }
                report.max_rate = Some(0.0);
                report.max_deliveries_per_s = Some(0.0);
            }
        }
    }
}

/// Runs the search: `run(fleet, step, rate)` runs one measured step;
/// `rebuild(fleet)` tears the connections down and sets them up again
/// (returning whether the new set is broken too), called before a step
/// whenever connections were lost. Each step is appended to
/// `report.steps`. Bounded by `max_steps` steps.
pub fn search(
    s: &Search,
    fleet: &mut Fleet,
    report: &mut Report,
    mut broken: bool,
    mut rebuild: impl FnMut(&mut Fleet) -> Result<bool, String>,
    mut run: impl FnMut(&mut Fleet, u32, f64) -> Result<PhaseResult, String>,
) -> Result<Found, String> {
    let budget_us = (s.p99_budget_ms * 1000.0) as u64;
    let mut rate = s.rate;
    let mut good: Option<f64> = None;
    let mut bad: Option<f64> = None;
    let mut found = Found::default();
    let mut retried: Option<f64> = None;
    for step in 0..s.max_steps {
        if broken {
            eprintln!("connections were lost: rebuilding the set");
            broken = rebuild(fleet)?;
        }
        let r = run(fleet, step as u32, rate)?;
        broken |= r.broken;
        let st = &r.stats;
        let p99 = st.lat.quantile_us(0.99);
        let held = st.expected > 0
            && (st.delivered as f64) >= 0.999 * st.expected as f64
            && p99 <= budget_us
            && !r.broken;
        eprintln!(
            "step {step}: {rate:.0} msg/s ({:.0} deliveries/s): p99 {} delivered {}/{} -> {}",
            rate * s.deliveries_per_msg,
            fmt_us(p99),
            st.delivered,
            st.expected,
            if held { "held" } else { "failed" }
        );
        report.steps.push(StepReport {
            rate,
            deliveries_per_s: st.delivered as f64 / s.duration,
            expected: st.expected,
            delivered: st.delivered,
            p50_us: st.lat.quantile_us(0.5),
            p99_us: p99,
            max_us: st.lat.max_us(),
            errors: st.error_count(),
            held,
        });
        if !held && retried != Some(rate) {
            retried = Some(rate);
            eprintln!("step {step}: retrying {rate:.0} msg/s once");
            found.last = Some(r);
            continue;
        }
        if held {
            good = Some(good.map_or(rate, |g: f64| g.max(rate)));
            if found.best.as_ref().is_none_or(|(br, _)| rate > *br) {
                found.best = Some((rate, r.clone()));
            }
        } else {
            bad = Some(bad.map_or(rate, |b: f64| b.min(rate)));
        }
        found.last = Some(r);
        rate = match (good, bad) {
            (Some(_), None) => rate * s.step_factor,
            (None, Some(b)) => b / s.step_factor,
            (Some(g), Some(b)) => {
                if b / g < 1.05 {
                    break;
                }
                (g + b) / 2.0
            }
            (None, None) => break,
        };
        if rate < 1.0 {
            break;
        }
    }
    Ok(found)
}
