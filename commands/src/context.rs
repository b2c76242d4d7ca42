//! What every use case runs with: the ports, the process's caches, and who is asking.

use crate::instagram::Instagram;
use lightwidget_domain::account::OwnerStatus;
use lightwidget_domain::{AccountId, WidgetId};
use lightwidget_store::{Clock, EventStore, Metadata, ViewStore};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The application layer's handle: the ports every use case reaches, and what this process
/// remembers between them.
pub struct Context {
    pub store: Arc<dyn EventStore>,
    /// The read models, for what a use case needs to find (an account's widgets).
    pub views: Arc<dyn ViewStore>,
    pub clock: Arc<dyn Clock>,
    pub instagram: Arc<dyn Instagram>,
    /// Keys Instagram identities (HMAC of the Instagram user id).
    pub identity_key: [u8; 32],
    /// Owners' account status as last read (see [`OwnerCache`]).
    pub owners: OwnerCache,
    /// Widgets whose Instagram media this process is fetching (R7).
    pub media_fetches: Mutex<HashSet<WidgetId>>,
    /// Who may receive which categories (R12): asked before every message is queued.
    pub processors: Arc<crate::processors::Registry>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        store: Arc<dyn EventStore>,
        views: Arc<dyn ViewStore>,
        clock: Arc<dyn Clock>,
        instagram: Arc<dyn Instagram>,
        identity_key: [u8; 32],
        processors: Arc<crate::processors::Registry>,
    ) -> Self {
        Context {
            store,
            views,
            clock,
            instagram,
            identity_key,
            owners: OwnerCache::default(),
            media_fetches: Mutex::new(HashSet::new()),
            processors,
        }
    }

    /// Holds at most `bytes` of owners in memory (the server's share of `LW_MEMORY_MB`).
    pub fn with_owner_cache_bytes(mut self, bytes: u64) -> Self {
        self.owners = OwnerCache::with_bytes(bytes);
        self
    }

    /// The keyed HMAC of an Instagram user id: what the log knows of an identity.
    pub fn identity(&self, instagram_user_id: &str) -> String {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.identity_key)
            .expect("HMAC takes a key of any length");
        mac.update(instagram_user_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Who asks, under which idempotency key, and what identifies the request.
#[derive(Clone, Copy, Debug)]
pub struct Invocation<'a> {
    /// The envelope metadata of what the caller does; its actor scopes the key.
    pub meta: &'a Metadata,
    /// The `Idempotency-Key`, if the caller sent one.
    pub key: Option<&'a str>,
    /// What identifies the request (for HTTP: method, path and the SHA-256 of the body).
    pub fingerprint: &'a str,
}

impl<'a> Invocation<'a> {
    /// A call without an idempotency key.
    pub fn once(meta: &'a Metadata) -> Self {
        Invocation {
            meta,
            key: None,
            fingerprint: "",
        }
    }

    /// The key scoped to the caller (`<actor>|<key>`), so that two callers' keys never meet.
    pub fn scoped_key(&self) -> Option<String> {
        self.key.map(|k| format!("{}|{k}", self.meta.actor))
    }

    /// The id a new thing of `kind` gets: random, or — under a key — derived from the
    /// caller and the key, so that a repeat addresses the same stream and is recognised.
    pub fn new_id(&self, kind: &str) -> uuid::Uuid {
        keyed_id(&self.meta.actor, self.key, kind)
    }
}

/// Runs a use case under the invocation's idempotency key, when it has one.
pub(crate) async fn run_keyed<U: crate::unit::UseCase>(
    cx: &Context,
    inv: Invocation<'_>,
    work: &U,
) -> Result<crate::Done<U::Output>, crate::CommandError> {
    let scoped = inv.scoped_key();
    let keyed = scoped.as_deref().map(|key| crate::Keyed {
        key,
        fingerprint: inv.fingerprint,
    });
    crate::unit::transact(&*cx.store, &*cx.clock, inv.meta, keyed, work).await
}

/// [`Invocation::new_id`] for a caller named by `scope`.
pub fn keyed_id(scope: &str, key: Option<&str>, kind: &str) -> uuid::Uuid {
    match key {
        None => uuid::Uuid::new_v4(),
        Some(key) => {
            let digest = Sha256::digest(format!("{scope}|{kind}|{key}").as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_random_bytes(bytes).into_uuid()
        }
    }
}

/// An owner's account status as this process last read it, with the version of the
/// account stream it was read at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedOwner {
    pub status: OwnerStatus,
    pub version: u64,
}

/// Owners' account status as this process last read it. A command that decides on an
/// entry fences the account stream at that version, so an entry gone stale (the account
/// changed here or in another process) costs a conflict and a fresh read, never a decision
/// on an old status. Bounded in bytes ([`OWNER_ENTRY_BYTES`] an entry), evicted one entry at
/// a time by quick_cache's S3-FIFO policy (issue 28).
pub struct OwnerCache {
    owners: Mutex<quick_cache::unsync::Cache<AccountId, CachedOwner, OwnerWeight>>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

/// What an owner's entry weighs: its key and value, and the cache's table around them.
pub const OWNER_ENTRY_BYTES: u64 = 64;

/// The bytes the owner cache holds by default.
pub const OWNER_CACHE_BYTES: u64 = 8 << 20;

#[derive(Clone)]
struct OwnerWeight;

impl quick_cache::Weighter<AccountId, CachedOwner> for OwnerWeight {
    fn weight(&self, _: &AccountId, _: &CachedOwner) -> u64 {
        OWNER_ENTRY_BYTES
    }
}

impl std::fmt::Debug for OwnerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerCache").finish_non_exhaustive()
    }
}

impl Default for OwnerCache {
    fn default() -> Self {
        OwnerCache::with_bytes(OWNER_CACHE_BYTES)
    }
}

impl OwnerCache {
    /// An owner cache of at most `bytes`.
    pub fn with_bytes(bytes: u64) -> Self {
        let items = (bytes / OWNER_ENTRY_BYTES).clamp(1, 1 << 24) as usize;
        OwnerCache {
            owners: Mutex::new(quick_cache::unsync::Cache::with_weighter(
                items,
                bytes.max(OWNER_ENTRY_BYTES),
                OwnerWeight,
            )),
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    fn owners(
        &self,
    ) -> std::sync::MutexGuard<'_, quick_cache::unsync::Cache<AccountId, CachedOwner, OwnerWeight>>
    {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, account: AccountId) -> Option<CachedOwner> {
        let found = self.owners().get(&account).copied();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        found
    }

    pub fn put(&self, account: AccountId, owner: CachedOwner) {
        self.owners().insert(account, owner);
    }

    /// Hits, misses, bytes and entries held.
    pub fn stats(&self) -> lightwidget_projections::cache::CacheStats {
        let owners = self.owners();
        lightwidget_projections::cache::CacheStats {
            hits: self.hits.load(std::sync::atomic::Ordering::Relaxed),
            misses: self.misses.load(std::sync::atomic::Ordering::Relaxed),
            bytes: owners.weight(),
            documents: owners.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past its bytes the owner cache evicts one entry at a time, never everything at once:
    /// it stays full, within its budget, and keeps what was just put.
    #[test]
    fn the_owner_cache_stays_within_its_bytes_and_never_starts_over() {
        let cache = OwnerCache::with_bytes(100 * OWNER_ENTRY_BYTES);
        let accounts: Vec<AccountId> = (0..1000).map(|_| AccountId::new()).collect();
        for (i, a) in accounts.iter().enumerate() {
            let owner = CachedOwner {
                status: OwnerStatus::Active,
                version: i as u64,
            };
            cache.put(*a, owner);
            assert_eq!(cache.get(*a), Some(owner), "just put: {i}");
            let s = cache.stats();
            assert!(s.bytes <= 100 * OWNER_ENTRY_BYTES, "{i}: {} bytes", s.bytes);
            if i >= 100 {
                assert!(s.documents >= 50, "{i}: only {} held", s.documents);
            }
        }
        let s = cache.stats();
        assert_eq!(s.hits, 1000);
        assert!(cache.get(accounts[0]).is_none(), "the oldest was evicted");
    }
}
