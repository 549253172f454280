//! Rendering results as tables (for people) or JSON (for scripts).

use std::io::Write;

use serde_json::json;
use serde_json::Value;

use crate::pb;

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints rows as aligned columns under a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}  ", c, w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
}

pub fn read_meta_json(r: &Option<pb::ReadMeta>) -> Value {
    let r = r.clone().unwrap_or_default();
    let s = r.served_by.unwrap_or_default();
    json!({
        "applied_index": r.applied_index,
        "staleness_upper_bound_ms": r.staleness_upper_bound_ms,
        "served_by": {"node": s.node, "region": s.region, "role": s.role},
        "consistency": r.consistency,
    })
}

pub fn state_name(state: i32) -> &'static str {
    match pb::VersionState::try_from(state) {
        Ok(pb::VersionState::Enabled) => "enabled",
        Ok(pb::VersionState::Disabled) => "disabled",
        Ok(pb::VersionState::Destroyed) => "destroyed",
        _ => "unknown",
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC), or "-" for zero.
pub fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_times() {
        assert_eq!(super::time(0), "-");
        assert_eq!(super::time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::time(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
