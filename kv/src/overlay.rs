//! [`Overlay`] and [`Txn`]: the writes of an applied batch and of one command, layered over a
//! read view until they are committed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;

use crate::view::KvView;
use crate::view::WriteSet;

/// Pending writes layered over a read view, so that later commands of one applied batch see the
/// writes of earlier ones before the batch is committed in one atomic write.
pub struct Overlay<'a> {
    base: &'a dyn KvView,
    writes: WriteSet,
    /// Whether keys asked about with [`Overlay::contains`] exist in `base`. The base view never
    /// changes, so an answer stays true for the whole batch (the cluster record is asked about
    /// once per command, and read from storage once per batch).
    in_base: RefCell<BTreeMap<Vec<u8>, bool>>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn KvView) -> Self {
        Self {
            base,
            writes: WriteSet::new(),
            in_base: RefCell::new(BTreeMap::new()),
        }
    }

    /// Whether `key` has a value, as [`Overlay::get`] would see it.
    pub fn contains(&self, key: &[u8]) -> io::Result<bool> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.is_some());
        }
        if let Some(known) = self.in_base.borrow().get(key) {
            return Ok(*known);
        }
        let found = self.base.get(key)?.is_some();
        self.in_base.borrow_mut().insert(key.to_vec(), found);
        Ok(found)
    }

    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Starts a nested transaction: writes made through the returned overlay reach this one only
    /// if [`Txn::commit`] is called (a failed command leaves no partial writes).
    pub fn txn(&mut self) -> Txn<'_, 'a> {
        Txn {
            parent: self,
            writes: WriteSet::new(),
        }
    }

    /// Up to `limit` pairs with keys `>= start` that begin with `prefix`, in key order, as
    /// [`Overlay::get`] would see them.
    pub fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        merged_scan(&self.writes, prefix, start, limit, |extra| {
            self.base.scan(prefix, start, limit.saturating_add(extra))
        })
    }

    pub fn into_writes(self) -> WriteSet {
        self.writes
    }
}

/// `limit` pairs of `writes` layered over what `below` returns. `below(extra)` must return the
/// first `limit + extra` pairs of the layer underneath; `extra` is the number of deletes
/// `writes` holds in the range, so that after they are taken out at least `limit` of them are
/// left whenever the layer underneath has that many, and none it left out sorts before them.
fn merged_scan(
    writes: &WriteSet,
    prefix: &[u8],
    start: &[u8],
    limit: usize,
    below: impl FnOnce(usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let from = if start > prefix { start } else { prefix };
    let mine: Vec<_> = writes
        .range(from.to_vec()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .collect();
    let deletes = mine.iter().filter(|(_, v)| v.is_none()).count();
    let base = below(deletes)?;
    let complete = base.len() < limit.saturating_add(deletes);
    let last = base.last().map(|(k, _)| k.clone());
    let mut all: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
    for (k, v) in mine {
        // Past the last key read underneath, a write may sort after keys not read: leave it
        // out unless everything underneath was read.
        if !complete && last.as_ref().is_some_and(|l| k > l) {
            break;
        }
        match v {
            Some(v) => all.insert(k.clone(), v.clone()),
            None => all.remove(k),
        };
    }
    Ok(all.into_iter().take(limit).collect())
}

/// Writes of one command, discarded unless committed.
pub struct Txn<'p, 'a> {
    parent: &'p mut Overlay<'a>,
    writes: WriteSet,
}

impl Txn<'_, '_> {
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.parent.get(key),
        }
    }

    /// Whether `key` has a value, as [`Txn::get`] would see it.
    pub fn contains(&self, key: &[u8]) -> io::Result<bool> {
        match self.writes.get(key) {
            Some(v) => Ok(v.is_some()),
            None => self.parent.contains(key),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Like [`Overlay::scan`], with this command's writes over the batch's.
    pub fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        merged_scan(&self.writes, prefix, start, limit, |extra| {
            self.parent.scan(prefix, start, limit.saturating_add(extra))
        })
    }

    pub fn commit(self) {
        self.parent.writes.extend(self.writes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::view::commit_to;
    use crate::view::WriteSet;

    #[test]
    fn contains_sees_the_batch_and_the_command_writes_over_the_base() {
        let mut kv = BTreeMap::new();
        let mut base = WriteSet::new();
        base.insert(b"in-base".to_vec(), Some(b"v".to_vec()));
        commit_to(&mut kv, base);
        let mut ov = Overlay::new(&kv);

        assert!(ov.contains(b"in-base").unwrap());
        assert!(
            !ov.contains(b"new").unwrap(),
            "asked once: now remembered as absent in base"
        );
        {
            let mut tx = ov.txn();
            tx.put(b"new".to_vec(), b"x".to_vec());
            tx.delete(b"in-base".to_vec());
            assert!(tx.contains(b"new").unwrap());
            assert!(!tx.contains(b"in-base").unwrap());
            // Not committed: the batch does not see it.
        }
        assert!(!ov.contains(b"new").unwrap());
        assert!(ov.contains(b"in-base").unwrap());
        let mut tx = ov.txn();
        tx.put(b"new".to_vec(), b"x".to_vec());
        tx.commit();
        assert!(
            ov.contains(b"new").unwrap(),
            "a committed write wins over the remembered answer"
        );
        assert_eq!(ov.get(b"new").unwrap(), Some(b"x".to_vec()));
    }

    fn keys(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<String> {
        pairs.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect()
    }

    #[test]
    fn scans_see_the_batch_and_the_command_over_the_base_in_key_order() {
        let mut kv = BTreeMap::new();
        let mut base = WriteSet::new();
        for k in ["p/a", "p/c", "p/e", "p/g", "q/x"] {
            base.insert(k.as_bytes().to_vec(), Some(b"base".to_vec()));
        }
        commit_to(&mut kv, base);
        let mut ov = Overlay::new(&kv);
        ov.delete(b"p/a".to_vec());
        ov.put(b"p/b".to_vec(), b"batch".to_vec());
        assert_eq!(keys(ov.scan(b"p/", b"", 2).unwrap()), ["p/b", "p/c"]);
        assert_eq!(keys(ov.scan(b"p/", b"p/d", 10).unwrap()), ["p/e", "p/g"]);
        // A write past what the base returned must not jump ahead of base keys not read.
        ov.put(b"p/h".to_vec(), b"batch".to_vec());
        assert_eq!(keys(ov.scan(b"p/", b"", 3).unwrap()), ["p/b", "p/c", "p/e"]);
        assert_eq!(
            keys(ov.scan(b"p/", b"", 10).unwrap()),
            ["p/b", "p/c", "p/e", "p/g", "p/h"]
        );
        let mut tx = ov.txn();
        tx.delete(b"p/b".to_vec());
        tx.delete(b"p/c".to_vec());
        tx.put(b"p/d".to_vec(), b"tx".to_vec());
        assert_eq!(keys(tx.scan(b"p/", b"", 2).unwrap()), ["p/d", "p/e"]);
        let (_, v) = &tx.scan(b"p/d", b"", 1).unwrap()[0];
        assert_eq!(v, b"tx");
        drop(tx);
        assert_eq!(keys(ov.scan(b"p/", b"", 1).unwrap()), ["p/b"], "not committed");
        assert!(ov.scan(b"r/", b"", 5).unwrap().is_empty());
    }
}
