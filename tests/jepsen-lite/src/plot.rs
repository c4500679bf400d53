//! The run on one time line, as an SVG: a lane per fault kind (bars while
//! each fault held), a lane per target (bars while it was down: red for every
//! node, amber for a minority), client operations (a tick per operation at
//! its invocation: green returned, grey unknown), and deliveries the sink got
//! (a dot each: blue accepted, red refused as stale).

use std::fmt::Write;

use crate::nemesis::FaultRecord;
use crate::sink::Delivery;
use crate::targets::{Down, Flip};
use crate::Op;

pub struct Timeline<'a> {
    pub start_ms: u64,
    pub seconds: f64,
    pub ops: &'a [Op],
    pub faults: &'a [FaultRecord],
    pub deliveries: &'a [Delivery],
    pub flips: &'a [Flip],
}

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 110.0;
const LANE: f64 = 22.0;

pub fn svg(t: &Timeline) -> String {
    let span = t.seconds.max(1.0);
    let x = |s: f64| LEFT + (s / span).clamp(0.0, 1.0) * (WIDTH - LEFT - 10.0);
    let at = |ms: u64| ms.saturating_sub(t.start_ms) as f64 / 1000.0;
    let targets = t.flips.iter().map(|f| f.target + 1).max().unwrap_or(0);
    let kinds = crate::schedule::Nemesis::ALL;
    let mut lanes: Vec<String> = kinds.iter().map(|k| k.name().to_string()).collect();
    lanes.extend((0..targets).map(|i| format!("target flip{i}")));
    lanes.push("operations".into());
    lanes.push("deliveries".into());
    let height = 30.0 + LANE * lanes.len() as f64 + 20.0;
    let y = |lane: usize| 20.0 + LANE * lane as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    for (i, name) in lanes.iter().enumerate() {
        let _ = write!(s, r#"<text x="4" y="{}">{name}</text>"#, y(i) + 14.0);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>"##,
            WIDTH - 10.0,
            y(i) + 20.0,
            y(i) + 20.0
        );
    }
    for f in t.faults {
        let lane = kinds.iter().position(|k| k.name() == f.kind).unwrap_or(0);
        let (a, b) = (x(at(f.start_ms)), x(at(f.end_ms)));
        let _ = write!(
            s,
            r##"<rect x="{a:.1}" y="{}" width="{:.1}" height="16" fill="#555"><title>{} {}</title></rect>"##,
            y(lane) + 2.0,
            (b - a).max(1.0),
            f.kind,
            f.detail
        );
    }
    for f in t.flips {
        let (a, b) = (x(f.at.as_secs_f64()), x((f.at + f.hold).as_secs_f64()));
        let color = if f.down == Down::All { "#d33" } else { "#e90" };
        let _ = write!(
            s,
            r#"<rect x="{a:.1}" y="{}" width="{:.1}" height="16" fill="{color}"/>"#,
            y(kinds.len() + f.target) + 2.0,
            (b - a).max(1.0)
        );
    }
    // Operations per second: bar height is the count, unknown ones in grey on top.
    let ops_lane = kinds.len() + targets;
    let bins = span.ceil() as usize + 1;
    let (mut done, mut unknown) = (vec![0u32; bins], vec![0u32; bins]);
    for o in t.ops {
        let b = ((o.call as f64 / 1e9) as usize).min(bins - 1);
        if o.ret().is_some() {
            done[b] += 1;
        } else {
            unknown[b] += 1;
        }
    }
    let most = done.iter().zip(&unknown).map(|(a, b)| a + b).max().unwrap_or(0).max(1) as f64;
    let bar = (x(1.0) - x(0.0)).max(1.0);
    for b in 0..bins {
        let base = y(ops_lane) + 19.0;
        let h_done = 17.0 * f64::from(done[b]) / most;
        let h_unknown = 17.0 * f64::from(unknown[b]) / most;
        let px = x(b as f64);
        if done[b] > 0 {
            let _ = write!(
                s,
                r##"<rect x="{px:.1}" y="{:.1}" width="{bar:.1}" height="{h_done:.1}" fill="#3a3"/>"##,
                base - h_done
            );
        }
        if unknown[b] > 0 {
            let _ = write!(
                s,
                r##"<rect x="{px:.1}" y="{:.1}" width="{bar:.1}" height="{h_unknown:.1}" fill="#999"/>"##,
                base - h_done - h_unknown
            );
        }
    }
    for d in t.deliveries {
        let px = x(at(d.at_ms));
        let color = if d.accepted { "#36c" } else { "#d33" };
        let _ = write!(s, r#"<circle cx="{px:.1}" cy="{}" r="3" fill="{color}"/>"#, y(ops_lane + 1) + 10.0);
    }
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="{}">0 s</text><text x="{}" y="{}" text-anchor="end">{span:.0} s</text></svg>"#,
        height - 4.0,
        WIDTH - 10.0,
        height - 4.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Input, Output};
    use std::time::Duration;

    #[test]
    fn the_plot_has_a_mark_for_every_fault_flip_op_and_delivery() {
        let faults =
            [FaultRecord { kind: "kill".into(), detail: "{1}".into(), start_ms: 2_000, end_ms: 5_000, error: None }];
        let flips = [Flip { target: 0, at: Duration::from_secs(1), hold: Duration::from_secs(3), down: Down::All }];
        let ops = [Op::returned(0, 1_000_000_000, Input::Read { key: "k".into() }, 1_100_000_000, Output::Value(None))];
        let deliveries = [Delivery {
            at_ms: 3_000,
            path: "/hook".into(),
            idempotency_key: Some("1".into()),
            fence: Some((1, 1, 1)),
            accepted: true,
            headers: Default::default(),
            body: String::new(),
        }];
        let svg = svg(&Timeline {
            start_ms: 1_000,
            seconds: 10.0,
            ops: &ops,
            faults: &faults,
            deliveries: &deliveries,
            flips: &flips,
        });
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 3, "a fault, a flip, one second of operations");
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("kill {1}"));
    }
}
