//! What every checker is given ([`Evidence`]) and what it reports ([`Violation`]).

use crate::history::History;

#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: &'static str, detail: impl Into<String>) -> Self {
        Self {
            invariant,
            detail: detail.into(),
        }
    }
}

/// Everything the checkers look at besides the history.
pub struct Evidence<'a> {
    pub history: &'a History,
    /// Every byte each node's storage holds.
    pub storage: Vec<(String, Vec<Vec<u8>>)>,
    /// Each node's request table at the end.
    pub tables: Vec<crate::cluster::RequestTable>,
    /// Plaintext seen in peer traffic.
    pub leaks: Vec<String>,
    /// Each running node's shredding at the end.
    pub shreds: Vec<NodeShred>,
    /// Every secret on every node at the end, with the versions it keeps.
    pub kept: Vec<crate::cluster::KeptVersions>,
    /// Every node's token records at the end.
    pub tokens: Vec<crate::cluster::NodeTokens>,
    /// Each node's audit chain at the end (node id, name, record hashes in order).
    pub audit_chains: Vec<(u64, String, Vec<[u8; 32]>)>,
    /// Every replica's audit anchors at the end.
    pub anchors: Vec<crate::cluster::ReplicaAnchors>,
}

/// How far a node got shredding its storage, and what its log still holds.
#[derive(Debug, Clone)]
pub struct NodeShred {
    pub node: String,
    /// The last destroy (or snapshot install) it applied, and how far its shredding got.
    pub requested: u64,
    pub through: u64,
    /// The first entry its log store holds (`None`: empty).
    pub first_log_index: Option<u64>,
}
