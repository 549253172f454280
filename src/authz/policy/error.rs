//! [`PolicyError`] and how user input is shown in its messages.

/// What is wrong with a principal id, an action, a policy document or a break-glass request.
/// Messages name the offending input (escaped and shortened), never secret data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid principal id {0}")]
    Principal(String),
    #[error("invalid action {0}")]
    Action(String),
    #[error("invalid policy: {0}")]
    Document(String),
    #[error("invalid break-glass request: {0}")]
    BreakGlass(String),
}

/// Shows user input in a message: quoted, control characters escaped, at most 60 characters.
pub(super) fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(60).flat_map(char::escape_default).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    format!("\"{out}\"")
}

pub(super) fn plural_policies(n: usize) -> String {
    if n == 1 {
        "1 policy".to_string()
    } else {
        format!("{n} policies")
    }
}
