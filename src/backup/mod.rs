//! Backups (docs/architecture.md: Backups): [`file`], the backup file format, written by a
//! node ([`crate::service::backup`]) and read by `coffer snapshot inspect|restore`;
//! [`saving`], a backup file written into place (temporary file, fsync, read back, rename);
//! [`schedule`], the leader's scheduled backups (`[backup]`); [`census`], what a backup's
//! state is made of, by key space.

pub mod census;
pub mod file;
pub mod saving;
pub mod schedule;
