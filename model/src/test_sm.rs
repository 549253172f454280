//! A state machine for unit tests: commands applied one per log index over memory storage,
//! with the proposer's clock under the test's control.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;

use coffer_kv::KvView;
use coffer_kv::Overlay;
use coffer_kv::WriteSet;

use crate::apply::apply;
use crate::error::ModelError;
use crate::keys;
use crate::pb;

/// The key space in memory, with the read-a-view, commit-a-batch shape of a storage backend.
#[derive(Default)]
pub(crate) struct MemState(RefCell<BTreeMap<Vec<u8>, Vec<u8>>>);

impl MemState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn view(&self) -> Box<dyn KvView + '_> {
        Box::new(MemView(self.0.borrow()))
    }

    pub fn commit(&self, writes: WriteSet) -> io::Result<()> {
        coffer_kv::commit_to(&mut self.0.borrow_mut(), writes);
        Ok(())
    }
}

struct MemView<'a>(std::cell::Ref<'a, BTreeMap<Vec<u8>, Vec<u8>>>);

impl KvView for MemView<'_> {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        KvView::get(&*self.0, key)
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.0.scan(prefix, start, limit)
    }

    fn for_each(&self, f: &mut coffer_kv::PairVisitor<'_>) -> io::Result<()> {
        self.0.for_each(f)
    }

    fn scan_each(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
        f: &mut coffer_kv::PairVisitor<'_>,
    ) -> io::Result<usize> {
        self.0.scan_each(prefix, start, limit, f)
    }
}

pub(crate) struct Sm {
    pub backend: MemState,
    /// Index of the last applied entry.
    pub index: u64,
    /// The log index the last command's result reported.
    pub reply_index: u64,
    /// Whether the last command's result was a replay.
    pub replayed: bool,
    /// `proposed_at_ms` of the next command (each command moves it 1 ms on).
    pub clock_ms: u64,
    pub principal: String,
    /// The watch events of the last command applied with [`Sm::apply`].
    pub events: Vec<pb::SecretEvent>,
}

/// Sealings for `versions`, each recognizable by its version byte.
pub(crate) fn sealed_for(versions: std::ops::RangeInclusive<u64>) -> Vec<pb::SealedFor> {
    versions
        .map(|v| pb::SealedFor {
            version: v,
            nonce: vec![v as u8; 12],
            ciphertext: vec![v as u8; 20],
        })
        .collect()
}

pub(crate) fn add(name: &str, version: u64, alias: &str) -> pb::command::Op {
    pb::command::Op::AddVersion(pb::AddVersion {
        name: name.into(),
        version,
        envelope: Some(pb::Envelope {
            format: 1,
            nonce: vec![1; 12],
            ciphertext: vec![2; 20],
            wrapped_keys: vec![pb::WrappedKey {
                region: "r".into(),
                ..Default::default()
            }],
        }),
        crc32c: 0,
        size: 4,
        alias: alias.into(),
        create_if_missing: Some(pb::SecretSpec::default()),
        expires_at_ms: 0,
        also_for: vec![],
        // What the proposer's token key makes of the value (any fixed bytes here).
        value_mac: vec![0xaa; 32],
        rotation_run: 0,
    })
}

/// A token record for `service:acme:api` (valid from 10 to 20 ms) with hash bytes `hash`.
/// A policy `name` letting service:acme:api read acme/* (what [`token_record`] names).
pub(crate) fn policy(name: &str) -> pb::Policy {
    pb::Policy {
        name: name.into(),
        statements: vec![pb::PolicyStatement {
            effect: pb::Effect::Allow as i32,
            principals: vec!["service:acme:api".into()],
            actions: vec!["secrets:read".into()],
            resources: vec!["acme/*".into()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A PutPolicy of [`policy`] `name`.
pub(crate) fn put_policy(name: &str) -> pb::command::Op {
    pb::command::Op::PutPolicy(pb::PutPolicy {
        policy: Some(policy(name)),
    })
}

pub(crate) fn token_record(accessor: &str, hash: u8) -> pb::TokenRecord {
    pb::TokenRecord {
        accessor: accessor.into(),
        token_sha256: vec![hash; 32],
        principal: "service:acme:api".into(),
        tenant: "acme".into(),
        policies: vec!["acme-read".into()],
        created_at_ms: 10,
        expires_at_ms: 20,
        ..Default::default()
    }
}

impl Sm {
    /// An empty state machine, not bootstrapped.
    pub fn empty() -> Self {
        Sm {
            backend: MemState::new(),
            index: 0,
            reply_index: 0,
            replayed: false,
            clock_ms: 1000,
            principal: "root".into(),
            events: Vec::new(),
        }
    }

    /// A bootstrapped state machine (default request retention).
    pub fn new() -> Self {
        Self::with_retention(0)
    }

    pub fn with_retention(request_retention_ms: u64) -> Self {
        let mut sm = Self::empty();
        let r = sm.run(pb::command::Op::Bootstrap(pb::Bootstrap {
            cluster: Some(pb::ClusterInfo {
                cluster_id: "test".into(),
                root_token_sha256: vec![0; 32],
                ..Default::default()
            }),
            request_retention_ms,
        }));
        assert!(r.is_ok(), "{r:?}");
        sm
    }

    pub fn run(&mut self, op: pb::command::Op) -> Result<pb::CommandOk, ModelError> {
        self.run_as(op, "")
    }

    /// Applies `op` under `request_id` as the next log entry.
    pub fn run_as(&mut self, op: pb::command::Op, request_id: &str) -> Result<pb::CommandOk, ModelError> {
        let cmd = pb::Command {
            proposed_at_ms: self.clock_ms,
            principal: self.principal.clone(),
            request_id: request_id.into(),
            op: Some(op),
        };
        let r = self.apply(&cmd);
        match r.outcome.expect("every command has an outcome") {
            pb::command_result::Outcome::Ok(ok) => Ok(ok),
            pb::command_result::Outcome::Error(e) => Err(ModelError::from_pb(&e)),
        }
    }

    /// Applies `cmd` as the next log entry and returns its whole result.
    pub fn apply(&mut self, cmd: &pb::Command) -> pb::CommandResult {
        self.index += 1;
        self.clock_ms += 1;
        let view = self.backend.view();
        let mut ov = Overlay::new(&*view);
        let r = apply(&mut ov, cmd, self.index).expect("memory storage does not fail");
        self.events = crate::changes::events(&ov, cmd, &r).expect("memory storage does not fail");
        let writes = ov.into_writes();
        drop(view);
        self.backend.commit(writes).expect("memory storage does not fail");
        self.reply_index = r.log_index;
        self.replayed = r.replayed;
        r
    }

    /// Applies `cmds` as consecutive log entries in one batch (one write, like the state
    /// machine's apply of several entries).
    pub fn apply_batch(&mut self, cmds: &[pb::Command]) -> Vec<pb::CommandResult> {
        let view = self.backend.view();
        let mut ov = Overlay::new(&*view);
        let mut out = Vec::new();
        for c in cmds {
            self.index += 1;
            out.push(apply(&mut ov, c, self.index).expect("memory storage does not fail"));
        }
        let writes = ov.into_writes();
        drop(view);
        self.backend.commit(writes).expect("memory storage does not fail");
        out
    }

    pub fn put(&mut self, name: &str, version: u64, alias: &str) -> Result<pb::CommandOk, ModelError> {
        self.run(add(name, version, alias))
    }

    pub fn promote(
        &mut self,
        name: &str,
        alias: &str,
        version: u64,
        expected: u64,
    ) -> Result<pb::CommandOk, ModelError> {
        self.run(pb::command::Op::MoveAlias(pb::MoveAlias {
            name: name.into(),
            alias: alias.into(),
            version,
            expected_version: expected,
        }))
    }

    /// Every key and value of the domain state: the request table (which every command moves)
    /// is left out, so "changed nothing" means the secrets, policies, tokens and cluster record.
    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        let mut all = vec![];
        self.backend
            .view()
            .for_each(&mut |k, v| {
                let table = k == keys::REQUESTS_META
                    || k.starts_with(keys::REQUEST_PREFIX)
                    || k.starts_with(keys::REQUEST_QUEUE_PREFIX);
                if !table {
                    all.push(k.to_vec());
                    all.push(v.to_vec());
                }
                Ok(())
            })
            .expect("memory storage does not fail");
        all
    }
}
