//! API tokens: random, shown once, stored only as their SHA-256 (on the stream
//! `token-<hash>`, in a `TokenIssued` event), and each carrying a role. A request's caller is
//! found from its bearer token: first in this process's cache, then in the log.

use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use lightwidget_domain::event::{Principal, Role, StaffAdded, TokenIssued};
use lightwidget_domain::{AccountId, Category, DomainEvent, Personal, StaffId, Subject};
use lightwidget_store::{AppendRequest, ExpectedVersion, Metadata, StreamWrite};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// A new random token: 32 bytes, base64url.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "lw_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// How a token is kept: hex SHA-256 (a token has 256 random bits; no salt is needed).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn token_stream(hash: &str) -> String {
    format!("token-{hash}")
}

/// The stream write that issues a token.
pub fn issue(
    token: &str,
    principal: Principal,
    role: Role,
    now: chrono::DateTime<chrono::Utc>,
    meta: &Metadata,
) -> StreamWrite {
    let hash = token_hash(token);
    let event: DomainEvent = TokenIssued {
        token_hash: hash.clone(),
        principal,
        role,
        issued_at: now,
    }
    .into();
    StreamWrite::of(
        token_stream(&hash),
        ExpectedVersion::NoStream,
        &[event],
        meta,
    )
}

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub role: Role,
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

/// Tokens already looked up by this process. Tokens are never revoked, so an entry never
/// goes stale; the map is bounded by clearing it when full.
#[derive(Debug, Default)]
pub struct TokenCache(Mutex<HashMap<String, Caller>>);

const TOKEN_CACHE_LIMIT: usize = 100_000;

impl TokenCache {
    pub fn get(&self, hash: &str) -> Option<Caller> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .copied()
    }
    pub fn put(&self, hash: String, caller: Caller) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= TOKEN_CACHE_LIMIT {
            map.clear();
        }
        map.insert(hash, caller);
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
        lookup(app, &token_hash(token))
            .await?
            .ok_or_else(|| Problem::unauthorized("unknown token"))
    }
}

async fn lookup(app: &AppState, hash: &str) -> Result<Option<Caller>, Problem> {
    if let Some(c) = app.tokens.get(hash) {
        return Ok(Some(c));
    }
    let events = app.store.read_stream(&token_stream(hash), 0, 1).await?;
    let Some(e) = events.first() else {
        return Ok(None);
    };
    match e.to_domain() {
        Ok(DomainEvent::TokenIssued(t)) => {
            let caller = Caller {
                principal: t.principal,
                role: t.role,
            };
            app.tokens.put(hash.to_owned(), caller);
            Ok(Some(caller))
        }
        _ => {
            tracing::error!(position = e.position, "a token stream holds another event");
            Err(Problem::internal())
        }
    }
}

/// The admin every installation starts with. Its id is fixed so that a restart finds it.
pub const BOOTSTRAP_ADMIN: StaffId = StaffId(uuid::Uuid::from_u128(1));

/// Makes sure an admin token exists. With `LW_ADMIN_TOKEN` that token is registered (if it
/// is not yet); without it, the first start generates one and returns it to be printed once.
pub async fn bootstrap_admin(
    app: &AppState,
    configured: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let store = &*app.store;
    let staff_stream = BOOTSTRAP_ADMIN.stream();
    let exists = !store.read_stream_raw(&staff_stream, 0, 1).await?.is_empty();
    let meta = Metadata {
        actor: "system".into(),
        ..Metadata::system()
    };
    let principal = Principal::Staff {
        staff_id: BOOTSTRAP_ADMIN,
    };
    let mut writes = Vec::new();
    if !exists {
        let added: DomainEvent = StaffAdded {
            staff_id: BOOTSTRAP_ADMIN,
            name: Personal::new(
                Subject::staff(BOOTSTRAP_ADMIN),
                Category::Profile,
                "admin".to_owned(),
            ),
            role: Role::Admin,
            added_by: None,
            added_at: app.clock.now(),
        }
        .into();
        writes.push(StreamWrite::of(
            staff_stream,
            ExpectedVersion::NoStream,
            &[added],
            &meta,
        ));
    }
    // The token to register, whether it is already known, and whether to print it.
    let (token, known, print) = match configured {
        Some(t) => {
            let known = !store
                .read_stream_raw(&token_stream(&token_hash(t)), 0, 1)
                .await?
                .is_empty();
            (t.to_owned(), known, false)
        }
        None if exists => return Ok(None),
        // A fresh random token cannot be known yet.
        None => (generate_token(), false, true),
    };
    if !known {
        writes.push(issue(
            &token,
            principal,
            Role::Admin,
            app.clock.now(),
            &meta,
        ));
    }
    if writes.is_empty() {
        return Ok(None);
    }
    match store
        .append(AppendRequest {
            writes,
            shred: vec![],
        })
        .await
    {
        Ok(_) => Ok(print.then_some(token)),
        // Another process bootstrapped at the same moment: its token stands.
        Err(lightwidget_store::StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
