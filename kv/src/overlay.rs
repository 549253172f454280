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

    pub fn into_writes(self) -> WriteSet {
        self.writes
    }
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
}
