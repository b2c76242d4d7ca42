//! A visitor's consent to analytics (R3): stated, withdrawn and read back, under the policy
//! version in force.

use crate::context::{run_keyed, Invocation};
use crate::unit::{Unit, UseCase};
use crate::{CommandError, Context};
use lightwidget_domain::consent::{StateConsent, VisitorConsent};
use lightwidget_domain::policy::PolicyVersions;
use lightwidget_domain::{streams, VisitorId};

/// A statement recorded: what it means for analytics, the policy version it was made under,
/// and the position of its event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stated {
    pub analytics_allowed: bool,
    pub policy_version: String,
    pub position: u64,
}

/// Records a visitor's statement (given or withdrawn). Under `DNT: 1` it is recorded as a
/// refusal, whatever the visitor sent.
pub async fn state(
    cx: &Context,
    inv: Invocation<'_>,
    visitor_id: VisitorId,
    analytics: bool,
    do_not_track: bool,
) -> Result<Stated, CommandError> {
    let work = State {
        visitor_id,
        analytics,
        do_not_track,
    };
    let done = run_keyed(cx, inv, &work).await?;
    let policy_version = match done.value {
        Some(v) => v,
        // A repeat under the same idempotency key: the version the first was made under.
        None => current(cx, visitor_id)
            .await?
            .policy_version
            .unwrap_or_default(),
    };
    Ok(Stated {
        analytics_allowed: analytics && !do_not_track,
        policy_version,
        position: done.position,
    })
}

/// What the log holds of a visitor's consent (no consent when nothing is, or once erased).
pub async fn current(cx: &Context, visitor_id: VisitorId) -> Result<VisitorConsent, CommandError> {
    Ok(
        crate::load::<VisitorConsent>(&*cx.store, &visitor_id.stream())
            .await?
            .state,
    )
}

struct State {
    visitor_id: VisitorId,
    analytics: bool,
    do_not_track: bool,
}

#[async_trait::async_trait]
impl UseCase for State {
    /// The policy version the statement was made under.
    type Output = String;

    async fn run(&self, u: &mut Unit<'_>) -> Result<String, CommandError> {
        // Which version is in force depends on the clock, not on a concurrent publication
        // (a new version takes effect 5 days after it is published at the earliest): read
        // without a fence. A statement never depends on an earlier one: appended unversioned.
        let versions = crate::load::<PolicyVersions>(u.store(), streams::PRIVACY_POLICIES)
            .await?
            .state;
        let policy_version = versions
            .in_force(u.now())
            .ok_or(CommandError::NotFound("privacy policy in force"))?
            .to_owned();
        u.decide_unversioned::<VisitorConsent>(
            &self.visitor_id.stream(),
            StateConsent {
                visitor_id: self.visitor_id,
                analytics: self.analytics,
                do_not_track: self.do_not_track,
                policy_version: policy_version.clone(),
            },
        )?;
        Ok(policy_version)
    }
}
