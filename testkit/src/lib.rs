//! Test and benchmark kit: a real Coffer cluster of `coffer server` processes on loopback,
//! with a delaying, cuttable proxy on every peer link.
//!
//! Every node is a separate OS process with its own RocksDB, talking real gRPC over TCP. Node
//! i reaches node j through its own [`DelayProxy`] (configured with
//! `network.peer_addr_override`), so each direction of each link has its own latency and can
//! be cut. The kit picks free ports, writes configs and keyrings into a temporary folder, and
//! kills every node when dropped. Used by `tests/` and `benches/` (dev-dependency only): never
//! linked into the server.

pub mod calls;
pub mod cluster;
pub mod fs;
pub mod http;
pub mod moto;
pub mod net;
pub mod proxy;
pub mod rotator;
pub mod spec;

pub use calls::create_token;
pub use calls::eventually;
pub use calls::get;
pub use calls::get_with;
pub use calls::put;
pub use calls::put_policy;
pub use calls::versions;
pub use calls::wait_token_key;
pub use cluster::TestCluster;
pub use fs::files_under;
pub use fs::Filler;
pub use fs::TempDir;
pub use fs::Tmpfs;
pub use http::http_request;
pub use http::HttpAnswer;
pub use net::free_port;
pub use net::http_get;
pub use net::metric;
pub use proxy::DelayProxy;
pub use spec::wan_rtt;
pub use spec::ClusterSpec;
pub use spec::FAST_RAFT;
