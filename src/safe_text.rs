//! Text from clients made safe to record and to show: characters that can drive a terminal
//! (ESC, CR, backspace, …) or reorder what it shows (bidi overrides, zero-width marks) are
//! written as `\u{…}`, and recorded text is cut to a bound that says how much was dropped.

use std::borrow::Cow;

/// Whether `c` can move a terminal's cursor, rewrite a line, or change the order or visibility
/// of what is shown: C0 and C1 controls, DEL, and Unicode format and bidi controls.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        )
}

/// How [`escape_with`] treats the characters that are safe in some places only.
#[derive(Clone, Copy)]
struct Keep {
    /// Newline and tab stay (a multi-line document); otherwise they are escaped (one line).
    layout: bool,
    /// `\` is doubled, so an escape in the output is never one the client typed.
    quote_backslash: bool,
}

fn escape_with(s: &str, keep: Keep) -> Cow<'_, str> {
    let needs =
        |c: char| (is_unsafe(c) && !(keep.layout && matches!(c, '\n' | '\t'))) || (keep.quote_backslash && c == '\\');
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !needs(c) {
            out.push(c);
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// `s` for one line of terminal output: every unsafe character, newline and tab included,
/// escaped. Borrowed when nothing needed escaping.
pub fn line(s: &str) -> Cow<'_, str> {
    escape_with(
        s,
        Keep {
            layout: false,
            quote_backslash: false,
        },
    )
}

/// `s` for multi-line terminal output (a policy document): like [`line`], but newline and tab
/// stay.
pub fn text(s: &str) -> Cow<'_, str> {
    escape_with(
        s,
        Keep {
            layout: true,
            quote_backslash: false,
        },
    )
}

/// `s` as one line (every unsafe character escaped, like [`line`]) of at most `max` bytes, cut at
/// a character boundary and ending with `…[+N bytes]` when it was cut: for messages that quote
/// what a client sent (an error status), which must stay one readable line of bounded size.
pub fn message(s: &str, max: usize) -> String {
    let escaped = line(s);
    if escaped.len() <= max {
        return escaped.into_owned();
    }
    let mut cut = max.saturating_sub(24);
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…[+{} bytes]", &escaped[..cut], escaped.len() - cut)
}

/// `s` for a record (an audit event): every unsafe character and `\` escaped, so the record
/// reads unambiguously, then cut at a character boundary to at most `max` bytes, ending with
/// `…[+N bytes]` (N counts the original's bytes left out) when it was cut.
pub fn bounded(s: &str, max: usize) -> String {
    let escaped = escape_with(
        s,
        Keep {
            layout: false,
            quote_backslash: true,
        },
    );
    if escaped.len() <= max {
        return escaped.into_owned();
    }
    // Reserve room for the marker; count what is left out in the client's own bytes.
    let room = max.saturating_sub(24);
    let mut kept = String::with_capacity(room + 24);
    let mut kept_original = 0usize;
    for c in s.chars() {
        let piece = escape_with(
            c.encode_utf8(&mut [0; 4]),
            Keep {
                layout: false,
                quote_backslash: true,
            },
        )
        .into_owned();
        if kept.len() + piece.len() > room {
            break;
        }
        kept.push_str(&piece);
        kept_original += c.len_utf8();
    }
    kept.push_str(&format!("…[+{} bytes]", s.len() - kept_original));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_and_bidi_are_escaped() {
        assert_eq!(line("plain/name-1"), "plain/name-1");
        assert!(matches!(line("plain"), Cow::Borrowed(_)));
        assert_eq!(line("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(line("ok\rFAKE"), "ok\\u{d}FAKE");
        assert_eq!(line("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe");
        assert_eq!(line("two\nlines\t"), "two\\u{a}lines\\u{9}");
        assert_eq!(line("c1\u{9b}31m"), "c1\\u{9b}31m");
        assert_eq!(line("zero\u{200b}width\u{feff}"), "zero\\u{200b}width\\u{feff}");
        assert_eq!(line("nul\0"), "nul\\u{0}");
        // Printable non-ASCII stays as it is.
        assert_eq!(line("héllo/名前"), "héllo/名前");
    }

    #[test]
    fn messages_are_one_bounded_line() {
        assert_eq!(message("no such policy", 100), "no such policy");
        assert_eq!(message("a\nb\0", 100), "a\\u{a}b\\u{0}");
        let m = message(&format!("policy {} not found", "a/".repeat(10_000)), 2048);
        assert!(
            m.len() <= 2048 && m.ends_with(" bytes]") && m.starts_with("policy a/a/"),
            "{}",
            m.len()
        );
        assert!(message(&"é".repeat(3000), 101).len() <= 101);
    }

    #[test]
    fn documents_keep_their_layout() {
        assert_eq!(text("{\n\t\"a\": 1\n}"), "{\n\t\"a\": 1\n}");
        assert_eq!(text("a\u{1b}]0;title\u{7}"), "a\\u{1b}]0;title\\u{7}");
    }

    #[test]
    fn records_are_unambiguous_and_bounded() {
        // A client cannot forge an escape: its backslash is doubled.
        assert_eq!(bounded("a\\u{1b}", 100), "a\\\\u{1b}");
        assert_eq!(bounded("a\u{1b}", 100), "a\\u{1b}");
        let huge = "x".repeat(1 << 20);
        let b = bounded(&huge, 256);
        assert!(b.len() <= 256, "{}", b.len());
        assert!(b.ends_with(&format!("…[+{} bytes]", (1 << 20) - (256 - 24))), "{b}");
        // Cut at a character boundary, and escapes are never split.
        let multi = "é".repeat(1000);
        assert!(bounded(&multi, 101).len() <= 101);
        let esc = "\u{1b}".repeat(1000);
        let b = bounded(&esc, 100);
        assert!(b.len() <= 100);
        assert!(b.starts_with("\\u{1b}\\u{1b}"));
        assert!(b.split("…").next().unwrap().len() % 6 == 0, "{b}");
        assert_eq!(bounded("short", 5), "short");
    }
}
