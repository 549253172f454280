//! The sequential specification of each kind of object, as the state machine should behave.
//!
//! A secret: its versions (value, enabled/disabled/destroyed/pruned), CURRENT and PREVIOUS, and
//! what `max_versions` (the simulated cluster's default, [`crate::shape::SIM_MAX_VERSIONS`])
//! keeps. A policy: whether it exists. A token (one per principal in the workload): whether it
//! was created and revoked; at the end its record may be gone once it was revoked or expired.

use crate::history::FinalAccess;
use crate::history::FinalSecret;
use crate::history::Kind;

/// What an operation answers in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A write applied; `version` as the state machine answers it (see `resolve::Recorded`).
    Ok { version: u64 },
    /// A read of CURRENT: its version and value id.
    Read { version: u64, value: Option<u64> },
    /// Refused, with the gRPC code the client gets.
    Refused(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VState {
    Enabled,
    Disabled,
    Destroyed,
    /// Deleted by `max_versions`: as if it never existed, its number never reused.
    Pruned,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Secret {
    pub exists: bool,
    /// Version v is `versions[v - 1]`: (value id, state).
    pub versions: Vec<(u64, VState)>,
    pub current: u64,
    pub previous: u64,
    /// Versions below this one are pruned unless in `held` (0: none yet).
    pub pruned_below: u64,
    pub held: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    Secret(Secret),
    Policy { exists: bool },
    Token { created: bool, revoked: bool },
}

impl Model {
    /// The initial state of `object`.
    pub fn of(object: &str) -> Model {
        if object.starts_with("policy:") {
            Model::Policy { exists: false }
        } else if object.starts_with("token:") {
            Model::Token {
                created: false,
                revoked: false,
            }
        } else {
            Model::Secret(Secret::default())
        }
    }

    /// What `kind` answers here and the state after it; None if `kind` does not apply to this
    /// kind of object.
    pub fn step(&self, kind: &Kind) -> Option<(Answer, Model)> {
        match self {
            Model::Secret(s) => s.step(kind).map(|(a, s)| (a, Model::Secret(s))),
            Model::Policy { exists } => {
                let (answer, exists) = match kind {
                    Kind::PutPolicy { .. } => (Answer::Ok { version: 0 }, true),
                    Kind::DeletePolicy if *exists => (Answer::Ok { version: 0 }, false),
                    Kind::DeletePolicy => (Answer::Refused("NotFound"), false),
                    _ => return None,
                };
                Some((answer, Model::Policy { exists }))
            }
            Model::Token { created, revoked } => {
                let (answer, created, revoked) = match kind {
                    Kind::CreateToken if *created => (Answer::Refused("AlreadyExists"), true, *revoked),
                    Kind::CreateToken => (Answer::Ok { version: 0 }, true, false),
                    Kind::RevokeToken { .. } if *created => (Answer::Ok { version: 0 }, true, true),
                    Kind::RevokeToken { .. } => (Answer::Refused("NotFound"), false, false),
                    _ => return None,
                };
                Some((answer, Model::Token { created, revoked }))
            }
        }
    }

    /// Differences between this state and what a node held at the end; empty if none.
    pub fn differs_from_final_secret(&self, f: &FinalSecret) -> Option<String> {
        let Model::Secret(s) = self else { return None };
        let mut want = std::collections::BTreeMap::new();
        for (i, (value, state)) in s.versions.iter().enumerate() {
            let (shown, name) = match state {
                VState::Enabled => (Some(*value), "enabled"),
                VState::Disabled => (None, "disabled"),
                VState::Destroyed => (None, "destroyed"),
                VState::Pruned => continue,
            };
            want.insert(i as u64 + 1, (shown, name.to_string()));
        }
        if want != f.versions || s.current != f.current {
            return Some(format!(
                "versions {want:?} with CURRENT={}, but the node holds {:?} with CURRENT={}",
                s.current, f.versions, f.current
            ));
        }
        None
    }

    /// Differences between this policy or token and what a node held at the end.
    pub fn differs_from_final_access(&self, object: &str, f: &FinalAccess) -> Option<String> {
        match self {
            Model::Policy { exists } => {
                let name = object.strip_prefix("policy:").unwrap_or(object);
                let held = f.policies.contains(name);
                (held != *exists).then(|| format!("the policy should {}exist", if *exists { "" } else { "not " }))
            }
            Model::Token { created, revoked } => {
                let principal = object.strip_prefix("token:").unwrap_or(object);
                let held = f.tokens.get(principal).copied();
                let want = created.then_some(*revoked);
                // A revoked or expired token's record is deleted after the retention.
                let stopped = *revoked || principal.ends_with(crate::workload::SHORT_LIVED);
                let collected = *created && stopped && held.is_none();
                (held != want && !collected)
                    .then(|| format!("the token should be {want:?} (Some(revoked)), the node holds {held:?}"))
            }
            Model::Secret(_) => None,
        }
    }
}

impl Secret {
    fn version(&self, v: u64) -> Option<VState> {
        (v >= 1)
            .then(|| self.versions.get(v as usize - 1).map(|x| x.1))
            .flatten()
            .filter(|s| *s != VState::Pruned)
    }

    /// Points CURRENT at `v`; the old CURRENT becomes PREVIOUS.
    fn make_current(&mut self, v: u64) {
        if self.current != 0 && self.current != v {
            self.previous = self.current;
        }
        self.current = v;
    }

    /// What `max_versions` deletes after a version was added or an alias moved: versions below
    /// the newest [`crate::shape::SIM_MAX_VERSIONS`] that no alias points at.
    fn prune(&mut self) {
        let aliased = |v: u64| v == self.current || v == self.previous;
        let mut gone = Vec::new();
        self.held.retain(|v| {
            let keep = aliased(*v);
            if !keep {
                gone.push(*v);
            }
            keep
        });
        let next = self.versions.len() as u64 + 1;
        let mut floor = self.pruned_below.max(1);
        while next - floor > crate::shape::SIM_MAX_VERSIONS {
            if aliased(floor) {
                self.held.push(floor);
            } else {
                gone.push(floor);
            }
            floor += 1;
        }
        if floor > 1 {
            self.pruned_below = floor;
        }
        for v in gone {
            self.versions[v as usize - 1].1 = VState::Pruned;
        }
    }

    fn step(&self, kind: &Kind) -> Option<(Answer, Secret)> {
        let mut next = self.clone();
        let answer = match kind {
            Kind::Put { value } => {
                let v = self.versions.len() as u64 + 1;
                next.exists = true;
                next.versions.push((*value, VState::Enabled));
                next.make_current(v);
                next.prune();
                Answer::Ok { version: v }
            }
            Kind::Get { .. } => match self.current {
                0 => Answer::Refused("NotFound"),
                c => Answer::Read {
                    version: c,
                    value: self.versions.get(c as usize - 1).map(|x| x.0),
                },
            },
            Kind::Create if self.exists => Answer::Refused("AlreadyExists"),
            Kind::Create => {
                next.exists = true;
                Answer::Ok { version: 0 }
            }
            Kind::Promote { version, expect } => match self.version(*version) {
                None => Answer::Refused("NotFound"),
                Some(VState::Enabled) if self.current != *expect => Answer::Refused("Aborted"),
                Some(VState::Enabled) => {
                    if self.current != *version {
                        next.make_current(*version);
                        next.prune();
                    }
                    Answer::Ok { version: *version }
                }
                Some(_) => Answer::Refused("FailedPrecondition"),
            },
            Kind::Disable { version } => match self.version(*version) {
                None | Some(VState::Pruned) => Answer::Refused("NotFound"),
                Some(VState::Destroyed) => Answer::Refused("FailedPrecondition"),
                Some(VState::Disabled) => Answer::Ok { version: *version },
                Some(VState::Enabled) if self.current == *version => Answer::Refused("FailedPrecondition"),
                Some(VState::Enabled) => {
                    next.versions[*version as usize - 1].1 = VState::Disabled;
                    Answer::Ok { version: *version }
                }
            },
            Kind::Destroy { version } => match self.version(*version) {
                None => Answer::Refused("NotFound"),
                Some(VState::Destroyed) => Answer::Ok { version: *version },
                Some(_) if self.current == *version => Answer::Refused("FailedPrecondition"),
                Some(_) => {
                    next.versions[*version as usize - 1].1 = VState::Destroyed;
                    if next.previous == *version {
                        next.previous = 0;
                    }
                    next.prune();
                    Answer::Ok { version: *version }
                }
            },
            Kind::PutPolicy { .. } | Kind::DeletePolicy | Kind::CreateToken | Kind::RevokeToken { .. } => return None,
        };
        Some((answer, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Mode;

    #[test]
    fn a_secret_follows_the_state_machine_rules() {
        let m = Model::of("acme/a");
        let get = Kind::Get {
            mode: Mode::Linearizable,
        };
        assert_eq!(m.step(&get).unwrap().0, Answer::Refused("NotFound"));
        let (a, m) = m.step(&Kind::Put { value: 7 }).unwrap();
        assert_eq!(a, Answer::Ok { version: 1 });
        let (_, m) = m.step(&Kind::Put { value: 8 }).unwrap();
        assert_eq!(
            m.step(&get).unwrap().0,
            Answer::Read {
                version: 2,
                value: Some(8)
            }
        );
        assert_eq!(
            m.step(&Kind::Destroy { version: 2 }).unwrap().0,
            Answer::Refused("FailedPrecondition"),
            "CURRENT cannot be destroyed"
        );
        assert_eq!(
            m.step(&Kind::Promote { version: 1, expect: 1 }).unwrap().0,
            Answer::Refused("Aborted")
        );
        let (_, m) = m.step(&Kind::Promote { version: 1, expect: 2 }).unwrap();
        let (a, m) = m.step(&Kind::Disable { version: 2 }).unwrap();
        assert_eq!(a, Answer::Ok { version: 2 });
        assert_eq!(
            m.step(&Kind::Promote { version: 2, expect: 1 }).unwrap().0,
            Answer::Refused("FailedPrecondition")
        );
        assert_eq!(m.step(&Kind::Create).unwrap().0, Answer::Refused("AlreadyExists"));
        assert!(m.step(&Kind::DeletePolicy).is_none());
    }

    #[test]
    fn policies_and_tokens() {
        let p = Model::of("policy:p0");
        assert_eq!(p.step(&Kind::DeletePolicy).unwrap().0, Answer::Refused("NotFound"));
        let (_, p) = p.step(&Kind::PutPolicy { value: 1 }).unwrap();
        assert_eq!(p.step(&Kind::DeletePolicy).unwrap().0, Answer::Ok { version: 0 });
        let t = Model::of("token:service:acme:x");
        let (_, t) = t.step(&Kind::CreateToken).unwrap();
        assert_eq!(t.step(&Kind::CreateToken).unwrap().0, Answer::Refused("AlreadyExists"));
        let revoke = Kind::RevokeToken { accessor: "aa".into() };
        let (a, t) = t.step(&revoke).unwrap();
        assert_eq!(
            (a, t.clone()),
            (
                Answer::Ok { version: 0 },
                Model::Token {
                    created: true,
                    revoked: true
                }
            )
        );
        assert_eq!(
            t.step(&revoke).unwrap().0,
            Answer::Ok { version: 0 },
            "revoking twice is fine"
        );
    }
}
