//! The privacy policy's versions (R25): the seed's text is version 1, in force from the
//! first start; an admin publishes a new version at least 5 days before it takes effect.

use crate::context::{run_keyed, Invocation};
use crate::unit::{transact, Unit, UseCase};
use crate::{CommandError, Context};
use chrono::{DateTime, Utc};
use lightwidget_domain::policy::{PolicyCommand, PolicyError, PolicyVersions};
use lightwidget_domain::{streams, DomainEvent, StaffId};
use lightwidget_store::Metadata;

/// The policy text checked in: version 1.
pub const SEED_TEXT: &str = include_str!("../privacy-policy.v1.txt");
/// The label of the seed's version.
pub const SEED_VERSION: &str = "1";

/// Makes sure the seed's version is published (once, at the first start; another process
/// starting at the same moment may have done it).
pub async fn seed(cx: &Context) -> Result<(), CommandError> {
    let work = OnPolicies(PolicyCommand::Seed {
        version: SEED_VERSION.into(),
        text: SEED_TEXT.into(),
    });
    let meta = Metadata {
        actor: "system".into(),
        ..Metadata::system()
    };
    match transact(&*cx.store, &*cx.clock, &meta, None, &work).await {
        Ok(_)
        | Err(CommandError::Rejected(crate::Rejection::Policy(PolicyError::AlreadySeeded))) => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A version published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub version: String,
    pub effective_at: DateTime<Utc>,
    pub position: u64,
}

/// Publishes a version (an admin's act, R25).
pub async fn publish(
    cx: &Context,
    inv: Invocation<'_>,
    by: StaffId,
    version: String,
    text: String,
    effective_at: DateTime<Utc>,
) -> Result<Published, CommandError> {
    let work = OnPolicies(PolicyCommand::Publish {
        version: version.clone(),
        text,
        effective_at,
        by,
    });
    let done = run_keyed(cx, inv, &work).await?;
    Ok(Published {
        version,
        effective_at,
        position: done.position,
    })
}

/// Every published version, in the order of publication, and the log position read.
pub async fn versions(cx: &Context) -> Result<PolicyVersions, CommandError> {
    Ok(
        crate::load::<PolicyVersions>(&*cx.store, streams::PRIVACY_POLICIES)
            .await?
            .state,
    )
}

struct OnPolicies(PolicyCommand);

#[async_trait::async_trait]
impl UseCase for OnPolicies {
    type Output = Vec<DomainEvent>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let stream = streams::PRIVACY_POLICIES;
        let versions = u.load::<PolicyVersions>(stream).await?;
        u.decide(stream, &versions, self.0.clone())
    }
}
