//! The public gRPC services: [`secrets::SecretsApi`], [`access::AccessApi`] (tokens and
//! policies), [`cluster::ClusterApi`] and [`kms::KmsApi`], and [`grpc_health`] (the standard
//! `grpc.health.v1`). Each handler decodes its request,
//! passes the authorization seam, calls one operation of [`crate::service::Service`] and
//! encodes the result; reads, writes, retries and races live in the service layer.

pub mod access;
pub mod cluster;
pub mod grpc_health;
pub mod kms;
pub mod secrets;
