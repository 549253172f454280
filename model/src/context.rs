//! Where and on whose behalf a command is applied: what every operation of the model gets
//! besides the command itself.

/// The command's time (its `proposed_at_ms`: apply reads no clock), log index, principal and
/// request id.
pub(crate) struct At<'a> {
    pub now: u64,
    pub log_index: u64,
    pub principal: &'a str,
    pub request_id: &'a str,
}
