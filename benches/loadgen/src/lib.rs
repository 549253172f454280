//! Coffer's load generator: closed- and open-loop load against Coffer, etcd and a bare tonic
//! echo service, and `compare`, the side-by-side run `make bench-compare` drives. The method
//! and the latest numbers are in benches/README.md.

pub mod compare;
pub mod cpu;
pub mod disk_space;
pub mod echo;
pub mod etcd_pb;
pub mod http;
pub mod load;
pub mod openbao;
pub mod systems;
pub mod target;
pub mod wire;
