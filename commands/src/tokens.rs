//! API tokens: random, shown once, stored only as their SHA-256 (on the stream
//! `token-<hash>`, in a `TokenIssued` event), each carrying a role; and the first admin of
//! an installation.

use crate::unit::{transact, Unit, UseCase};
use crate::{CommandError, Context};
use base64::Engine;
use lightwidget_domain::event::{Principal, Role};
use lightwidget_domain::staff::{
    AddStaff, IssueToken, StaffCommand, StaffMember, Token, TokenCommand,
};
use lightwidget_domain::values::StaffName;
use lightwidget_domain::{streams, StaffId};
use lightwidget_store::{Metadata, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};

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

/// Decides the issue of `token` in a unit: its stream is new (a token is random).
pub async fn issue(
    u: &mut Unit<'_>,
    token: &str,
    principal: Principal,
    role: Role,
) -> Result<(), CommandError> {
    let token_hash = token_hash(token);
    let stream = streams::token(&token_hash);
    let loaded = u.assume_new::<Token>(&stream).await?;
    u.decide(
        &stream,
        &loaded,
        TokenCommand::Issue(IssueToken {
            token_hash,
            principal,
            role,
        }),
    )?;
    Ok(())
}

/// The admin every installation starts with. Its id is fixed so that a restart finds it.
pub const BOOTSTRAP_ADMIN: StaffId = StaffId(uuid::Uuid::from_u128(1));

/// Makes sure an admin token exists. With a configured token that token is registered (if
/// it is not yet); without one, the first start generates one and returns it to be printed
/// once. Another process bootstrapping at the same moment wins; its token stands.
pub async fn bootstrap_admin(
    cx: &Context,
    configured: Option<&str>,
) -> Result<Option<String>, CommandError> {
    let (token, print) = match configured {
        Some(t) => (t.to_owned(), false),
        None => (generate_token(), true),
    };
    let work = Bootstrap {
        token: &token,
        configured: configured.is_some(),
    };
    let meta = Metadata {
        actor: "system".into(),
        ..Metadata::system()
    };
    match transact(&*cx.store, &*cx.clock, &meta, None, &work).await {
        Ok(done) => Ok((print && done.value == Some(true)).then_some(token)),
        Err(CommandError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

struct Bootstrap<'a> {
    token: &'a str,
    /// A configured token is registered even when the admin exists; a generated one only
    /// with a new admin.
    configured: bool,
}

#[async_trait::async_trait]
impl UseCase for Bootstrap<'_> {
    /// Whether the token was issued now.
    type Output = bool;

    async fn run(&self, u: &mut Unit<'_>) -> Result<bool, CommandError> {
        let staff_stream = BOOTSTRAP_ADMIN.stream();
        let admin = u.load::<StaffMember>(&staff_stream).await?;
        let exists = admin.state.role.is_some();
        if exists && !self.configured {
            return Ok(false);
        }
        if !exists {
            let name = StaffName::parse("admin")?;
            u.decide(
                &staff_stream,
                &admin,
                StaffCommand::Add(AddStaff {
                    staff_id: BOOTSTRAP_ADMIN,
                    name,
                    role: Role::Admin,
                    added_by: None,
                }),
            )?;
        }
        let stream = streams::token(&token_hash(self.token));
        let known = u.load::<Token>(&stream).await?;
        if known.state.issued.is_some() {
            if known.state.revoked {
                tracing::warn!("LW_ADMIN_TOKEN names a revoked admin token; it is refused");
            }
            return Ok(false);
        }
        if exists {
            // A new configured token replaces the admin's tokens so far: changing
            // `LW_ADMIN_TOKEN` revokes the one it held before.
            u.decide(
                &staff_stream,
                &admin,
                StaffCommand::RotateTokens { by: None },
            )?;
        }
        let principal = Principal::Staff {
            staff_id: BOOTSTRAP_ADMIN,
        };
        issue(u, self.token, principal, Role::Admin).await?;
        Ok(true)
    }
}

/// What a token grants: whom, with which role, since when, whether it expires (every token
/// but the installation's admin token does) and whether it was revoked (its holder signed
/// out, the staff member was removed, or their tokens were rotated after it was issued).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub principal: Principal,
    pub role: Role,
    pub issued_at: chrono::DateTime<chrono::Utc>,
    pub expires: bool,
    pub revoked: bool,
}

/// The grant of a token, from the log: `None` when it was never issued. Reads the token's
/// stream and, for a staff token, the staff member's.
pub async fn lookup(
    store: &dyn lightwidget_store::EventStore,
    token_hash: &str,
) -> Result<Option<Grant>, CommandError> {
    use lightwidget_domain::DomainEvent as E;
    let events = store.read_stream(&streams::token(token_hash), 0, 2).await?;
    let Some(first) = events.first() else {
        return Ok(None);
    };
    let E::TokenIssued(t) = first.to_domain()? else {
        return Err(StoreError::Corrupt(format!(
            "a token stream begins with another event at position {}",
            first.position
        ))
        .into());
    };
    let mut grant = Grant {
        principal: t.principal,
        role: t.role,
        issued_at: t.issued_at,
        expires: t.principal
            != (Principal::Staff {
                staff_id: BOOTSTRAP_ADMIN,
            }),
        revoked: events.len() > 1,
    };
    if let Principal::Staff { staff_id } = t.principal {
        for e in store.read_whole_stream(&staff_id.stream()).await? {
            match e.to_domain()? {
                E::StaffRemoved(_) => grant.revoked = true,
                E::StaffTokensRotated(_) if e.position > first.position => grant.revoked = true,
                _ => {}
            }
        }
    }
    Ok(Some(grant))
}

/// Signs a token's holder out: the token is revoked. The answer is the revocation's position.
pub async fn sign_out(
    cx: &Context,
    meta: &Metadata,
    token_hash: &str,
) -> Result<u64, CommandError> {
    let work = SignOut(streams::token(token_hash));
    Ok(transact(&*cx.store, &*cx.clock, meta, None, &work)
        .await?
        .position)
}

struct SignOut(String);

#[async_trait::async_trait]
impl UseCase for SignOut {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let token = u.load::<Token>(&self.0).await?;
        u.decide(&self.0, &token, TokenCommand::Revoke)?;
        Ok(())
    }
}

/// A staff member's new token, shown once.
#[derive(Clone, Debug)]
pub struct Rotated {
    pub token: String,
    pub position: u64,
}

/// Replaces every token of `staff_id` by a new one (an admin's own, `POST /v1/admin/token`):
/// the old ones are revoked in the same append that issues the new one.
pub async fn rotate(
    cx: &Context,
    meta: &Metadata,
    staff_id: StaffId,
) -> Result<Rotated, CommandError> {
    let token = generate_token();
    let work = Rotate {
        staff_id,
        token: &token,
    };
    let done = transact(&*cx.store, &*cx.clock, meta, None, &work).await?;
    Ok(Rotated {
        token,
        position: done.position,
    })
}

struct Rotate<'a> {
    staff_id: StaffId,
    token: &'a str,
}

#[async_trait::async_trait]
impl UseCase for Rotate<'_> {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let stream = self.staff_id.stream();
        let member = u.load::<StaffMember>(&stream).await?;
        let role = member
            .state
            .role
            .ok_or(CommandError::NotFound("staff member"))?;
        u.decide(
            &stream,
            &member,
            StaffCommand::RotateTokens {
                by: Some(self.staff_id),
            },
        )?;
        let principal = Principal::Staff {
            staff_id: self.staff_id,
        };
        issue(u, self.token, principal, role).await
    }
}
