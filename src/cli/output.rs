//! Rendering results as tables (for people) or JSON (for scripts). Everything printed passes
//! through [`crate::safe_text`]: text from a server or another client (names, messages, audit
//! fields) never reaches the terminal as a control sequence.

use std::io::Write;

use serde_json::json;
use serde_json::Value;

use crate::pb;

pub fn print_json(v: &Value) {
    println!("{}", json_text(v));
}

/// `v` as pretty JSON, safe on a terminal ([`json_escape`]).
pub fn json_text(v: &Value) -> String {
    json_escape(serde_json::to_string_pretty(v).unwrap_or_default())
}

/// Serialized JSON with every terminal control written as a `\uXXXX` escape (serde_json
/// escapes only C0 controls): the same JSON value, safe on a terminal. Outside strings JSON
/// holds only ASCII punctuation, letters, digits and whitespace, so every escaped character is
/// inside a string, where `\uXXXX` means the same character.
pub fn json_escape(s: String) -> String {
    use std::borrow::Cow;
    if matches!(crate::safe_text::text(&s), Cow::Borrowed(_)) {
        return s;
    }
    s.chars()
        .map(|c| match crate::safe_text::text(c.encode_utf8(&mut [0; 4])) {
            Cow::Borrowed(_) => c.to_string(),
            Cow::Owned(_) => c
                .encode_utf16(&mut [0; 2])
                .iter()
                .map(|u| format!("\\u{u:04x}"))
                .collect(),
        })
        .collect()
}

/// Prints `s` (our own words around a server's or client's text) on stdout with every
/// terminal control escaped; newlines and tabs stay.
pub fn say(s: impl AsRef<str>) {
    println!("{}", crate::safe_text::text(s.as_ref()));
}

/// Writes a secret's value as it is to a pipe or file (scripts get the exact bytes); on a
/// terminal, as text with its terminal controls escaped, so a value cannot drive the terminal.
pub fn write_value(out: &mut impl Write, value: &[u8], terminal: bool) -> std::io::Result<()> {
    if !terminal {
        return out.write_all(value);
    }
    let text = String::from_utf8_lossy(value);
    out.write_all(crate::safe_text::text(&text).as_bytes())?;
    if !value.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Prints rows as aligned columns under a header; each cell is one line, its controls escaped.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| crate::safe_text::line(c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
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
    for r in &rows {
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

pub use coffer_model::query::state_name;

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
    use serde_json::json;

    #[test]
    fn json_output_escapes_terminal_controls_and_means_the_same() {
        let v = json!({"name": "a\u{1b}[2J\u{9b}b\u{202e}c", "n": 1, "plain": "héllo"});
        let s = super::json_text(&v);
        assert!(
            !s.chars().any(|c| c == '\u{1b}' || c == '\u{9b}' || c == '\u{202e}'),
            "{s}"
        );
        assert!(
            s.contains("\\u009b") && s.contains("\\u202e") && s.contains("héllo"),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
    }

    #[test]
    fn a_value_is_exact_in_a_pipe_and_escaped_on_a_terminal() {
        let value = b"pass\x1b]0;pwned\x07word\r\n".to_vec();
        let mut piped = Vec::new();
        super::write_value(&mut piped, &value, false).unwrap();
        assert_eq!(piped, value);
        let mut shown = Vec::new();
        super::write_value(&mut shown, &value, true).unwrap();
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "pass\\u{1b}]0;pwned\\u{7}word\\u{d}\n"
        );
    }

    #[test]
    fn formats_times() {
        assert_eq!(super::time(0), "-");
        assert_eq!(super::time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::time(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
