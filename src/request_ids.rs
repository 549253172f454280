//! Request ids: what makes a retried write harmless.
//!
//! Every write reaches the state machine under a request id, and the request table
//! (`coffer_model::requests`) answers a retry of an id with its first outcome instead of
//! applying it again. A client that wants its own retries to be recognized (after a timeout, a
//! lost connection, another node) sends the same `coffer-request-id` header with each attempt;
//! without one, the node that takes the request makes one up, which covers its own forwarding
//! and leader-change retries but not the client's.
//!
//! A client's id is scoped by its principal (`<principal>|<id>`), so two principals never share
//! an id, and no one can learn another's outcome by guessing it. Ids the node makes are 32 hex
//! characters, which never contain `|`, so the two kinds never collide.

use tonic::metadata::MetadataMap;

/// The request header that carries a client's request id.
pub const HEADER: &str = "coffer-request-id";
/// Longest request id a client may send.
pub const MAX_CLIENT_ID: usize = 64;

/// Checks a client-chosen request id: 1 to 64 of `A-Z a-z 0-9 . _ : -` (a UUID fits).
pub fn validate_client_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a request id must be 1 to {MAX_CLIENT_ID} characters of A-Z, a-z, 0-9, '.', '_', ':', '-' (a UUID fits)"
        ))
    }
}

/// The client's request id from `meta`, if it sent one. The error never repeats the value.
pub fn from_metadata(meta: &MetadataMap) -> Result<Option<String>, String> {
    let Some(v) = meta.get(HEADER) else {
        return Ok(None);
    };
    let bad = |e: String| format!("the {HEADER} header is invalid: {e}");
    let id = v.to_str().map_err(|_| bad(validate_client_id("").unwrap_err()))?;
    validate_client_id(id).map_err(bad)?;
    Ok(Some(id.to_string()))
}

/// The id a client's request carries in the log: its own id, scoped by its principal.
pub fn scoped(principal: &str, client_id: &str) -> String {
    format!("{principal}|{client_id}")
}

/// A fresh id for a request that came without one, or for a command a node makes itself.
pub fn fresh() -> Result<String, crate::crypto::CryptoError> {
    Ok(hex::encode(crate::crypto::random_bytes::<16>()?))
}

/// The id of attempt `n` of one request that proposes several commands in turn (a put that
/// lost the race for a version number seals again for the next one: another command). Attempt
/// 0 keeps the request's id. Client ids never contain `+`, so these are distinct.
pub fn attempt(request_id: &str, n: usize) -> String {
    if n == 0 {
        request_id.to_string()
    } else {
        format!("{request_id}+{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_checked_and_the_error_never_repeats_them() {
        for good in [
            "a",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "job:42.retry_1",
            &"x".repeat(64),
        ] {
            assert_eq!(validate_client_id(good), Ok(()), "{good}");
        }
        // One message for every bad id: it never echoes what the client sent.
        let message = validate_client_id("").unwrap_err();
        for bad in ["a b", "a|b", "a+1", "a/b", "\u{1b}[2J", &"x".repeat(65), "é"] {
            assert_eq!(validate_client_id(bad).unwrap_err(), message, "{bad:?}");
        }
        let mut meta = MetadataMap::new();
        assert_eq!(from_metadata(&meta), Ok(None));
        meta.insert(HEADER, "job-7".parse().unwrap());
        assert_eq!(from_metadata(&meta), Ok(Some("job-7".into())));
        meta.insert(HEADER, "job 7".parse().unwrap());
        assert!(from_metadata(&meta).unwrap_err().contains(HEADER));
    }

    #[test]
    fn scoped_and_attempt_ids_never_collide() {
        // A principal cannot forge another's scope: the client part never contains '|'.
        assert_ne!(scoped("user:a", "b"), scoped("user:a|b", "c"));
        assert_eq!(attempt("r", 0), "r");
        assert_eq!(attempt("r", 2), "r+2");
        assert!(!fresh().unwrap().contains(['|', '+']));
    }
}
