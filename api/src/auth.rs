//! API tokens on the HTTP side: a request's caller is found from its bearer token, first in
//! this process's cache, then in the log (tokens are issued by the use cases of
//! `lightwidget_commands::tokens`, which keep only their SHA-256).

use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use lightwidget_commands::tokens::{token_hash, Grant};
use lightwidget_domain::event::{Principal, Role, StaffRemoved, StaffTokensRotated};
use lightwidget_domain::{AccountId, DomainEvent, StaffId};
use lightwidget_store::EventStore;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Who is calling, and with which token (its hash: what sign-out revokes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub role: Role,
    pub token_hash: String,
}

impl Caller {
    /// The caller's account, if the caller is an owner; staff get 403.
    pub fn owner(&self) -> Result<AccountId, Problem> {
        match self.principal {
            Principal::Owner { account_id } if self.role == Role::Owner => Ok(account_id),
            _ => Err(Problem::forbidden("this call is for account owners")),
        }
    }

    /// The caller's staff id, if the caller holds `role` (an admin holds every staff role).
    pub fn staff(&self, role: Role) -> Result<StaffId, Problem> {
        match self.principal {
            Principal::Staff { staff_id } if self.role.grants(role) => Ok(staff_id),
            _ => Err(Problem::forbidden(format!(
                "this call needs the {} role",
                role.as_str()
            ))),
        }
    }

    /// The actor recorded in the envelope of what this caller does.
    pub fn actor(&self) -> String {
        match self.principal {
            Principal::Owner { account_id } => format!("account:{account_id}"),
            Principal::Staff { staff_id } => format!("staff:{staff_id}"),
        }
    }
}

/// Tokens already looked up by this process, with what they grant. A grant changes only by
/// revocation (sign-out, a staff member removed, tokens rotated); expiry is checked on every
/// request from the grant's issue time. The cache serves from memory only while
/// [`TokenCache::follow`] reads the log's revocations, from every process that appends: a
/// revocation on another process reaches this one within the follower's lag (PostgreSQL's
/// NOTIFY, a read, tens of milliseconds). A request that names `min_position` is checked
/// against the log itself. While nothing follows, every request reads the log.
///
/// Bounded in bytes (each grant weighs its token hash and [`TOKEN_ENTRY_BYTES`]), evicted
/// one grant at a time by quick_cache's S3-FIFO policy (issue 28): an evicted grant is read
/// from the log again.
pub struct TokenCache {
    tokens: Mutex<Tokens>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

struct Tokens {
    following: bool,
    /// The follower has read every revocation up to here.
    seen: u64,
    /// Moves whenever the follower forgets something: a grant read from the log before a
    /// move may be stale and is not kept.
    generation: u64,
    grants: quick_cache::unsync::Cache<String, Grant, GrantWeight>,
}

/// What a grant weighs beside its key: the grant, the key's allocation and the cache's
/// table around them.
pub const TOKEN_ENTRY_BYTES: u64 = 96;

/// The bytes the token cache holds by default.
pub const TOKEN_CACHE_BYTES: u64 = 8 << 20;

#[derive(Clone)]
struct GrantWeight;

impl quick_cache::Weighter<String, Grant> for GrantWeight {
    fn weight(&self, hash: &String, _: &Grant) -> u64 {
        hash.len() as u64 + TOKEN_ENTRY_BYTES
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::with_bytes(TOKEN_CACHE_BYTES)
    }
}

/// What a revocation revokes: one token, or every token of a staff member.
#[derive(Clone, Copy, Debug)]
pub enum Revocation<'a> {
    Token(&'a str),
    Staff(StaffId),
}

/// The events that revoke a token.
const REVOCATIONS: &[&str] = &["TokenRevoked", "StaffRemoved", "StaffTokensRotated"];

impl TokenCache {
    /// A token cache of at most `bytes` of grants.
    pub fn with_bytes(bytes: u64) -> Self {
        let items = (bytes / (64 + TOKEN_ENTRY_BYTES)).clamp(1, 1 << 24) as usize;
        TokenCache {
            tokens: Mutex::new(Tokens {
                following: false,
                seen: 0,
                generation: 0,
                grants: quick_cache::unsync::Cache::with_weighter(items, bytes.max(1), GrantWeight),
            }),
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hits, misses, bytes and grants held.
    pub fn stats(&self) -> lightwidget_projections::cache::CacheStats {
        let t = self.tokens();
        lightwidget_projections::cache::CacheStats {
            hits: self.hits.load(std::sync::atomic::Ordering::Relaxed),
            misses: self.misses.load(std::sync::atomic::Ordering::Relaxed),
            bytes: t.grants.weight(),
            documents: t.grants.len(),
        }
    }

    /// The grant from memory, or the generation to hand to [`TokenCache::put`] after
    /// reading it from the log.
    fn get(&self, hash: &str) -> Result<Grant, u64> {
        let t = self.tokens();
        let found = match t.grants.get(hash) {
            Some(g) if t.following => Ok(*g),
            _ => Err(t.generation),
        };
        let counter = if found.is_ok() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        found
    }

    fn put(&self, hash: String, grant: Grant, generation: u64) {
        let mut t = self.tokens();
        if !t.following || t.generation != generation {
            return;
        }
        t.grants.insert(hash, grant);
    }

    /// Forgets the grants these events revoke.
    fn forget(&self, revoked: &[DomainEvent]) {
        for e in revoked {
            match e {
                DomainEvent::TokenRevoked(r) => self.revoked(Revocation::Token(&r.token_hash)),
                DomainEvent::StaffRemoved(StaffRemoved { staff_id, .. })
                | DomainEvent::StaffTokensRotated(StaffTokensRotated { staff_id, .. }) => {
                    self.revoked(Revocation::Staff(*staff_id))
                }
                _ => {}
            }
        }
    }

    /// Forgets at once what a revocation decided in this process revokes (the follower
    /// would, a moment later): this process answers 401 from the revocation's answer on.
    pub fn revoked(&self, revocation: Revocation<'_>) {
        let mut t = self.tokens();
        t.generation += 1;
        match revocation {
            Revocation::Token(hash) => {
                t.grants.remove(hash);
            }
            Revocation::Staff(staff_id) => {
                let of = Principal::Staff { staff_id };
                t.grants.retain(|_, g| g.principal != of);
            }
        }
    }

    /// How far the follower has read the log; `None` while nothing follows.
    pub fn followed(&self) -> Option<u64> {
        let t = self.tokens();
        t.following.then_some(t.seen)
    }

    fn saw(&self, seen: u64) {
        self.tokens().seen = seen;
    }

    fn restart(&self, following: bool) {
        let mut t = self.tokens();
        t.grants.clear();
        t.generation += 1;
        t.following = following;
    }

    /// Reads the log's revocations from its head until `stop` resolves.
    pub async fn follow(
        &self,
        events: Arc<dyn EventStore>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut after = None;
        loop {
            let step = async {
                let from = match after {
                    Some(p) => p,
                    None => {
                        let head = events.head().await?.position;
                        self.restart(true);
                        self.saw(head);
                        head
                    }
                };
                let (raw, end) = events.read_all_light_of(from, 1000, REVOCATIONS).await?;
                let full = raw.len() >= 1000;
                let revoked: Vec<DomainEvent> = raw
                    .into_iter()
                    .filter_map(|e| e.decode_sealed().ok())
                    .collect();
                if !revoked.is_empty() {
                    self.forget(&revoked);
                }
                self.saw(end.max(from));
                Ok::<_, lightwidget_store::StoreError>((end.max(from), full))
            };
            tokio::select! {
                _ = &mut stop => return,
                r = step => match r {
                    Ok((end, full)) => {
                        after = Some(end);
                        if !full {
                            tokio::select! {
                                _ = &mut stop => return,
                                _ = events.wait_for(end, Duration::from_secs(1)) => {}
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e,
                            "the token cache cannot follow the log; tokens are read from the store");
                        self.restart(false);
                        after = None;
                        tokio::select! {
                            _ = &mut stop => return,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                },
            }
        }
    }
}

/// The caller of a request that must carry a token: 401 without one or with an unknown one.
impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Problem> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("an Authorization: Bearer token is required"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header is not a Bearer token")
            })?;
        let fresh = parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("min_position=")));
        Caller::of_token(app, token, fresh).await
    }
}

impl Caller {
    /// The caller holding `token`, checked as every request's is: 401 when it is unknown,
    /// revoked or expired. `fresh` reads the grant from the log, not from this process's
    /// cache. The console's session cookie holds the token, and comes here too.
    pub async fn of_token(app: &AppState, token: &str, fresh: bool) -> Result<Self, Problem> {
        let hash = token_hash(token);
        let grant = lookup(app, &hash, fresh)
            .await?
            .ok_or_else(|| Problem::unauthorized("unknown token"))?;
        if grant.revoked {
            return Err(Problem::unauthorized("the token was revoked"));
        }
        // On the server's clock (the manual clock moves it): every token but the
        // installation's admin token ends `LW_TOKEN_TTL_HOURS` after it was issued.
        if grant.expires && app.clock.now() >= grant.issued_at + app.token_ttl {
            return Err(Problem::unauthorized("the token expired"));
        }
        Ok(Caller {
            principal: grant.principal,
            role: grant.role,
            token_hash: hash,
        })
    }
}

/// The grant of a token: from memory unless `fresh` (the request named a `min_position`, so
/// it is checked against the log itself), else from the log.
async fn lookup(app: &AppState, hash: &str, fresh: bool) -> Result<Option<Grant>, Problem> {
    let generation = match app.tokens.get(hash) {
        Ok(g) if !fresh => return Ok(Some(g)),
        Ok(_) => None,
        Err(generation) => Some(generation),
    };
    let Some(grant) = lightwidget_commands::tokens::lookup(&*app.store, hash).await? else {
        return Ok(None);
    };
    if let Some(generation) = generation {
        app.tokens.put(hash.to_owned(), grant, generation);
    }
    Ok(Some(grant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(principal: Principal) -> Grant {
        Grant {
            principal,
            role: Role::Owner,
            issued_at: chrono::Utc::now(),
            expires: true,
            revoked: false,
        }
    }

    /// Past its bytes the token cache evicts one grant at a time (never everything at once),
    /// and a staff member's revocation still forgets every grant of theirs it holds.
    #[test]
    fn the_token_cache_stays_within_its_bytes_and_revocations_still_reach_it() {
        let budget = 50 * (64 + TOKEN_ENTRY_BYTES);
        let cache = TokenCache::with_bytes(budget);
        cache.restart(true);
        let staff = StaffId::new();
        for i in 0..1000 {
            let hash = format!("{i:064x}");
            let principal = if i % 2 == 0 {
                Principal::Staff { staff_id: staff }
            } else {
                Principal::Owner {
                    account_id: AccountId::new(),
                }
            };
            let generation = cache.get(&hash).expect_err("not held yet");
            cache.put(hash.clone(), grant(principal), generation);
            assert!(cache.get(&hash).is_ok(), "just put: {i}");
            let s = cache.stats();
            assert!(s.bytes <= budget, "{i}: {} bytes", s.bytes);
            if i >= 50 {
                assert!(s.documents >= 25, "{i}: only {} held", s.documents);
            }
        }
        let staff_held = (0..1000)
            .filter(|i| i % 2 == 0)
            .filter(|i| cache.get(&format!("{i:064x}")).is_ok())
            .count();
        assert!(staff_held > 0, "some of the staff member's grants are held");
        cache.revoked(Revocation::Staff(staff));
        for i in (0..1000).filter(|i| i % 2 == 0) {
            assert!(cache.get(&format!("{i:064x}")).is_err(), "{i} still held");
        }
    }
}
