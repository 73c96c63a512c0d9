use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    Acquired, Commit, Instance, ListQuery, Millis, SagaStore, Snapshot, StepRecord, StepReply,
    StepState,
};
use crate::error::StoreError;
use crate::id::{Phase, SagaId};

#[derive(Debug, Default)]
struct Entry {
    instance: Option<Instance>,
    records: Vec<StepRecord>,
    replies: HashMap<String, StepReply>,
}

/// A [`SagaStore`] in process memory: the semantics of the durable stores without the
/// durability (everything is lost with the process). For tests and for sagas that need no
/// crash recovery.
///
/// # Clone
///
/// Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<HashMap<SagaId, Entry>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SagaId, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written (every
        // mutation below is a plain assignment), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn snapshot(entry: &Entry) -> Option<Snapshot> {
    let instance = entry.instance.clone()?;
    let mut records = entry.records.clone();
    records.sort_by_key(|r| r.seq);
    Some(Snapshot { instance, records })
}

impl SagaStore for MemoryStore {
    async fn create(&self, instance: &Instance) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.contains_key(&instance.id) {
            return Err(StoreError::AlreadyExists { id: instance.id });
        }
        map.insert(
            instance.id,
            Entry {
                instance: Some(instance.clone()),
                ..Entry::default()
            },
        );
        Ok(())
    }

    async fn load(&self, id: SagaId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().get(&id).and_then(snapshot))
    }

    async fn acquire(
        &self,
        id: SagaId,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Acquired, StoreError> {
        let mut map = self.lock();
        let Some(entry) = map.get_mut(&id) else {
            return Ok(Acquired::NotFound);
        };
        let Some(instance) = entry.instance.as_mut() else {
            return Ok(Acquired::NotFound);
        };
        if let (Some(holder), Some(until)) = (&instance.lease_owner, instance.lease_until)
            && holder != owner
            && until >= now
        {
            return Ok(Acquired::Held {
                owner: holder.clone(),
            });
        }
        instance.lease_owner = Some(owner.to_owned());
        instance.lease_until = Some(lease_until);
        instance.version += 1;
        Ok(snapshot(entry).map_or(Acquired::NotFound, Acquired::Yes))
    }

    async fn commit(
        &self,
        id: SagaId,
        owner: &str,
        expected_version: u64,
        commit: &Commit,
    ) -> Result<u64, StoreError> {
        let mut map = self.lock();
        let conflict = StoreError::Conflict {
            id,
            expected: expected_version,
        };
        let Some(entry) = map.get_mut(&id) else {
            return Err(conflict);
        };
        let Some(instance) = entry.instance.as_mut() else {
            return Err(conflict);
        };
        if instance.version != expected_version || instance.lease_owner.as_deref() != Some(owner) {
            return Err(conflict);
        }
        instance.version += 1;
        instance.status = commit.status;
        instance.reason.clone_from(&commit.reason);
        instance.updated_at = commit.now;
        if commit.lease_until.is_some() {
            instance.lease_until = commit.lease_until;
        } else {
            instance.lease_owner = None;
            instance.lease_until = None;
        }
        let version = instance.version;
        if let Some(record) = &commit.record {
            let mut record = record.clone();
            record.seq = version;
            if record.phase == Phase::Forward && record.state == StepState::Started {
                entry.replies.remove(&record.step);
            }
            match entry
                .records
                .iter_mut()
                .find(|r| r.step == record.step && r.phase == record.phase)
            {
                Some(slot) => *slot = record,
                None => entry.records.push(record),
            }
        }
        Ok(version)
    }

    async fn heartbeat(
        &self,
        id: SagaId,
        owner: &str,
        lease_until: Millis,
    ) -> Result<Option<bool>, StoreError> {
        let mut map = self.lock();
        let Some(instance) = map.get_mut(&id).and_then(|e| e.instance.as_mut()) else {
            return Ok(None);
        };
        if instance.lease_owner.as_deref() != Some(owner) {
            return Ok(None);
        }
        instance.lease_until = Some(lease_until);
        Ok(Some(instance.cancel_requested))
    }

    async fn request_cancel(&self, id: SagaId) -> Result<bool, StoreError> {
        let mut map = self.lock();
        let Some(instance) = map.get_mut(&id).and_then(|e| e.instance.as_mut()) else {
            return Ok(false);
        };
        instance.cancel_requested = true;
        Ok(true)
    }

    async fn deliver_reply(
        &self,
        id: SagaId,
        step: &str,
        reply: &StepReply,
    ) -> Result<bool, StoreError> {
        let mut map = self.lock();
        let Some(entry) = map.get_mut(&id) else {
            return Ok(false);
        };
        let open = entry.records.iter().any(|r| {
            r.step == step && r.phase == Phase::Forward && r.state != StepState::Succeeded
        });
        if open {
            entry.replies.insert(step.to_owned(), reply.clone());
        }
        Ok(open)
    }

    async fn reply(&self, id: SagaId, step: &str) -> Result<Option<StepReply>, StoreError> {
        Ok(self
            .lock()
            .get(&id)
            .and_then(|e| e.replies.get(step).cloned()))
    }

    async fn recoverable(&self, now: Millis, limit: u32) -> Result<Vec<SagaId>, StoreError> {
        let map = self.lock();
        let mut found: Vec<&Instance> = map
            .values()
            .filter_map(|e| e.instance.as_ref())
            .filter(|i| i.status.is_active() && i.lease_until.is_none_or(|until| until < now))
            .collect();
        found.sort_by_key(|i| (i.created_at, i.id));
        Ok(found.iter().take(limit as usize).map(|i| i.id).collect())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Instance>, StoreError> {
        let map = self.lock();
        let mut found: Vec<Instance> = map
            .values()
            .filter_map(|e| e.instance.as_ref())
            .filter(|i| query.status.is_none_or(|s| s == i.status))
            .filter(|i| query.saga_type.as_ref().is_none_or(|t| *t == i.saga_type))
            .cloned()
            .collect();
        found.sort_by_key(|i| std::cmp::Reverse((i.created_at, i.id)));
        found.truncate(query.limit as usize);
        Ok(found)
    }

    async fn find_awaiting(
        &self,
        correlation_key: &str,
    ) -> Result<Option<(SagaId, String)>, StoreError> {
        let map = self.lock();
        Ok(map.iter().find_map(|(id, e)| {
            e.records
                .iter()
                .find(|r| {
                    r.state == StepState::Awaiting
                        && r.correlation_key.as_deref() == Some(correlation_key)
                })
                .map(|r| (*id, r.step.clone()))
        }))
    }
}
