//! Deliberate bugs that the simulations switch on to prove their checkers catch them.
//!
//! Built only with the `inject-bugs` feature, which only `coffer-simulations` enables; without
//! it [`active`] is a constant `false` and the branches compile away. Even when built in, a bug
//! is off unless the simulation running on this thread turns it on with [`set`] (every
//! simulated host of one run shares its thread).

/// A bug the simulations can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Serve `linearizable` reads from the local replica without a read index.
    StaleLinearizable,
    /// Acknowledge a write from a dry run on the local replica, before it commits.
    EarlyAck,
    /// Skip the compare-and-swap check when moving an alias.
    CasIgnore,
    /// Skip the request-table lookup: a retried command is evaluated (and applied) again.
    ReplayForgets,
    /// Report a shredding pass done without purging the log through the destroy.
    ShredSkipsPurge,
    /// Prune versions past `max_versions` even when an alias points at them.
    PruneAliased,
    /// Delete the token records first in the due queue whether or not they are due.
    TokensCollectedEarly,
    /// Never delete token records.
    TokensKept,
    /// Anchor an audit head's hash under the next record's number.
    AnchorOffByOne,
    /// A rotation's retire step disables the new version (CURRENT) instead of the old one.
    RotationRetiresCurrent,
    /// The retire verdict ignores the reads members report: PREVIOUS is retired while read.
    RetireIgnoresReads,
    /// A rotator's write for a run that no longer waits for its value lands as a plain
    /// PENDING version instead of being refused.
    LateHookWriteLands,
    /// A watch resumed after an index drops the first change it would send.
    WatchResumeSkips,
    /// A drill's fence stops peer traffic but lets clients in.
    FenceLetsClientsIn,
}

impl Bug {
    pub const ALL: [Bug; 14] = [
        Bug::StaleLinearizable,
        Bug::EarlyAck,
        Bug::CasIgnore,
        Bug::ReplayForgets,
        Bug::ShredSkipsPurge,
        Bug::PruneAliased,
        Bug::TokensCollectedEarly,
        Bug::TokensKept,
        Bug::AnchorOffByOne,
        Bug::RotationRetiresCurrent,
        Bug::RetireIgnoresReads,
        Bug::LateHookWriteLands,
        Bug::WatchResumeSkips,
        Bug::FenceLetsClientsIn,
    ];

    /// The command-line name (`--inject-bug NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Bug::StaleLinearizable => "stale-linearizable",
            Bug::EarlyAck => "early-ack",
            Bug::CasIgnore => "cas-ignore",
            Bug::ReplayForgets => "replay-forgets",
            Bug::ShredSkipsPurge => "shred-skips-purge",
            Bug::PruneAliased => "prune-aliased",
            Bug::TokensCollectedEarly => "tokens-collected-early",
            Bug::TokensKept => "tokens-kept",
            Bug::AnchorOffByOne => "anchor-off-by-one",
            Bug::RotationRetiresCurrent => "rotation-retires-current",
            Bug::RetireIgnoresReads => "retire-ignores-reads",
            Bug::LateHookWriteLands => "late-hook-write-lands",
            Bug::WatchResumeSkips => "watch-resume-skips",
            Bug::FenceLetsClientsIn => "fence-lets-clients-in",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(feature = "inject-bugs")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Turns `bug` on (or every bug off) for code running on this thread.
#[cfg(feature = "inject-bugs")]
pub fn set(bug: Option<Bug>) {
    ACTIVE.with(|a| a.set(bug));
}

/// Whether `bug` is switched on for this thread; always false without `inject-bugs`.
#[inline]
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "inject-bugs")]
    {
        ACTIVE.with(|a| a.get() == Some(bug))
    }
    #[cfg(not(feature = "inject-bugs"))]
    {
        let _ = bug;
        false
    }
}
