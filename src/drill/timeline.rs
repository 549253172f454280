//! The drill's timeline as an SVG a person can open: one row per region and request kind, each
//! request a mark from when it was sent to when it was answered (green: succeeded, red:
//! failed), the fault window shaded, the leader's moves as vertical lines.

use super::probe::ProbeKind;
use super::probe::Sample;
use super::report::Report;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 210.0;
const ROW: f64 = 22.0;
const TOP: f64 = 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG for `report` and its `samples`.
pub fn svg(report: &Report, samples: &[Sample]) -> String {
    let end = samples
        .iter()
        .map(|s| s.end_ms)
        .chain([report.fault.end_ms])
        .max()
        .unwrap_or(1)
        .max(1);
    let x = |ms: u64| LEFT + (ms as f64 / end as f64) * (WIDTH - LEFT - 20.0);
    let rows: Vec<(String, ProbeKind)> = report
        .regions
        .keys()
        .flat_map(|r| ProbeKind::ALL.iter().map(move |k| (r.clone(), *k)))
        .collect();
    let height = TOP + ROW * rows.len() as f64 + 40.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    );
    s += &format!(
        "<title>Drill {} ({}): request outcomes per region over time</title>\n",
        esc(&report.drill_id),
        esc(&report.scenario)
    );
    s += &format!(
        "<text x=\"10\" y=\"20\" font-size=\"15\">Drill {} · {} {} · {}</text>\n",
        esc(&report.drill_id),
        esc(&report.scenario),
        esc(&report.argument),
        if report.passed { "passed" } else { "FAILED" }
    );
    // The fault window.
    s += &format!(
        "<rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f6d5d5\"><title>fault: +{} ms to +{} ms</title></rect>\n",
        x(report.fault.start_ms),
        TOP - 8.0,
        x(report.fault.end_ms) - x(report.fault.start_ms),
        ROW * rows.len() as f64 + 8.0,
        report.fault.start_ms,
        report.fault.end_ms
    );
    for (i, (region, kind)) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        s += &format!(
            "<text x=\"10\" y=\"{:.1}\">{} {}</text>\n",
            y + 11.0,
            esc(region),
            kind.as_str().replace('_', " ")
        );
        for r in samples.iter().filter(|r| r.region == *region && r.kind == *kind) {
            let (x0, x1) = (x(r.start_ms), x(r.end_ms));
            s += &format!(
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{}\"/>\n",
                y + 2.0,
                (x1 - x0).max(1.0),
                if r.ok { "#2e9e44" } else { "#d62828" }
            );
        }
    }
    for m in &report.leader_moves {
        let lx = x(m.at_ms);
        s += &format!(
            "<line x1=\"{lx:.1}\" y1=\"{}\" x2=\"{lx:.1}\" y2=\"{:.1}\" stroke=\"#1d3557\" stroke-dasharray=\"4 3\"/>\n",
            TOP - 14.0,
            TOP + ROW * rows.len() as f64
        );
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\">leader {} (term {})</text>\n",
            lx + 3.0,
            TOP - 16.0,
            esc(&m.leader),
            m.term
        );
    }
    let axis_y = TOP + ROW * rows.len() as f64 + 20.0;
    for t in (0..=end).step_by(((end / 10).max(1000) / 1000 * 1000) as usize) {
        s += &format!(
            "<text x=\"{:.1}\" y=\"{axis_y:.1}\" font-size=\"10\">{}s</text>\n",
            x(t),
            t / 1000
        );
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::report::Inputs;
    use crate::drill::report::Window;

    #[test]
    fn the_timeline_marks_every_request_and_shades_the_fault() {
        let samples: Vec<Sample> = (0..4)
            .map(|i| Sample {
                region: "eu<west>".into(),
                node: "n".into(),
                kind: ProbeKind::Write,
                start_ms: i * 1000,
                end_ms: i * 1000 + 20,
                ok: i != 2,
                code: String::new(),
                version: i,
                seq: i,
                log_index: i,
                staleness_ms: 0,
            })
            .collect();
        let report = crate::drill::report::compute(Inputs {
            drill_id: "d",
            scenario: "leader-loss",
            argument: "",
            started: String::new(),
            fault: Window {
                start_ms: 1_500,
                end_ms: 2_500,
            },
            faults: vec![],
            fenced: vec![],
            samples: &samples,
            nodes: &[],
            lost: vec![],
            unverified: vec![],
            expected: vec![],
            kms_region: None,
            missing_wrap_after: None,
            kms_usage: None,
        });
        let svg = svg(&report, &samples);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("fill=\"#2e9e44\"").count(), 3);
        assert_eq!(svg.matches("fill=\"#d62828\"").count(), 1);
        assert!(svg.contains("fault: +1500 ms to +2500 ms"));
        assert!(
            svg.contains("eu&lt;west&gt;") && !svg.contains("eu<west>"),
            "names are escaped"
        );
    }
}
