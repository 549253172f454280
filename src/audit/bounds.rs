//! What one audit event may hold. Every string of an event is escaped and cut
//! ([`crate::safe_text::bounded`]) before it is recorded, so a record has a bounded size however
//! large the request behind it, and a client's text cannot carry terminal controls into
//! `coffer audit tail` or any other reader.

use crate::pb;
use crate::safe_text::bounded;

/// Bound of the fields that carry a client's text at length: the resource, the break-glass
/// reason, and the statement (an error may quote the request).
pub const MAX_LONG_FIELD_BYTES: usize = 1024;
/// Bound of every other string field.
pub const MAX_SHORT_FIELD_BYTES: usize = 256;
/// No bounded event encodes to more than this.
pub const MAX_EVENT_BYTES: usize = 3 * MAX_LONG_FIELD_BYTES + 11 * MAX_SHORT_FIELD_BYTES + 256;

/// `event` with every string field escaped and cut to its bound.
pub fn bound(event: pb::AuditEvent) -> pb::AuditEvent {
    let long = |s: String| bounded(&s, MAX_LONG_FIELD_BYTES);
    let short = |s: String| bounded(&s, MAX_SHORT_FIELD_BYTES);
    pb::AuditEvent {
        time_ms: event.time_ms,
        node: short(event.node),
        region: short(event.region),
        principal: short(event.principal),
        action: short(event.action),
        resource: long(event.resource),
        version: event.version,
        decision: short(event.decision),
        statement: long(event.statement),
        request_id: short(event.request_id),
        source: short(event.source),
        consistency: short(event.consistency),
        break_glass: event.break_glass,
        reason: long(event.reason),
        ticket: short(event.ticket),
        severity: short(event.severity),
        credential: short(event.credential),
        outcome: short(event.outcome),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn a_huge_hostile_event_records_small_and_escaped() {
        let huge = |c: &str| c.repeat(1 << 20);
        let e = bound(pb::AuditEvent {
            time_ms: u64::MAX,
            node: huge("n"),
            region: huge("r"),
            principal: huge("p"),
            action: huge("a"),
            resource: format!("acme/\u{1b}[2J\r{}", huge("x")),
            version: u64::MAX,
            decision: huge("d"),
            statement: huge("s"),
            request_id: huge("i"),
            source: huge("o"),
            consistency: huge("c"),
            break_glass: true,
            reason: huge("\u{202e}"),
            ticket: huge("t"),
            severity: huge("v"),
            credential: huge("k"),
            outcome: huge("o"),
        });
        let len = e.encoded_len();
        assert!(len <= MAX_EVENT_BYTES, "{len} bytes");
        assert!(
            e.resource.starts_with("acme/\\u{1b}[2J\\u{d}x"),
            "{}",
            &e.resource[..40]
        );
        assert!(e.resource.ends_with(" bytes]"));
        assert!(!e.reason.contains('\u{202e}'));
        assert!(e.reason.starts_with("\\u{202e}"));
        assert_eq!(e.version, u64::MAX);
    }

    #[test]
    fn an_ordinary_event_is_unchanged() {
        let e = pb::AuditEvent {
            time_ms: 1,
            node: "node-1".into(),
            principal: "service:web".into(),
            action: "secrets:read".into(),
            resource: "acme/prod/db-password".into(),
            decision: "allow".into(),
            statement: "readers#0 (read)".into(),
            source: "127.0.0.1:5000".into(),
            ..Default::default()
        };
        assert_eq!(bound(e.clone()), e);
    }
}
