//! API tokens on the HTTP side: a request's caller is found from its bearer token, first in
//! this process's cache, then in the log (tokens are issued by the use cases of
//! `lightwidget_commands::tokens`, which keep only their SHA-256).

use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use lightwidget_commands::tokens::{token_hash, Grant};
use lightwidget_domain::event::{Principal, Role};
use lightwidget_domain::{AccountId, StaffId};
use std::collections::HashMap;
use std::sync::Mutex;

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

/// Tokens already looked up by this process, with what they grant. A grant never changes
/// (tokens are not revoked yet; each expires by its own issue time), so an entry never goes
/// stale; the map is bounded by clearing it when full.
#[derive(Debug, Default)]
pub struct TokenCache(Mutex<HashMap<String, Grant>>);

const TOKEN_CACHE_LIMIT: usize = 100_000;

impl TokenCache {
    pub fn get(&self, hash: &str) -> Option<Grant> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .copied()
    }
    pub fn put(&self, hash: String, grant: Grant) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= TOKEN_CACHE_LIMIT {
            map.clear();
        }
        map.insert(hash, grant);
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
        let grant = lookup(app, &token_hash(token))
            .await?
            .ok_or_else(|| Problem::unauthorized("unknown token"))?;
        // On the server's clock (the manual clock moves it): every token but the
        // installation's admin token ends `LW_TOKEN_TTL_HOURS` after it was issued.
        if grant.expires && app.clock.now() >= grant.issued_at + app.token_ttl {
            return Err(Problem::unauthorized("the token expired"));
        }
        Ok(Caller {
            principal: grant.principal,
            role: grant.role,
        })
    }
}

async fn lookup(app: &AppState, hash: &str) -> Result<Option<Grant>, Problem> {
    if let Some(g) = app.tokens.get(hash) {
        return Ok(Some(g));
    }
    let Some(grant) = lightwidget_commands::tokens::lookup(&*app.store, hash).await? else {
        return Ok(None);
    };
    app.tokens.put(hash.to_owned(), grant);
    Ok(Some(grant))
}
