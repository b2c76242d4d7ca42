//! The link from an Instagram identity (a keyed hash of the Instagram user id) to the
//! account it signs in to, on `instagram-<identity>`: the first sign-in links it, and a user
//! whose account was purged and who comes back is linked to a new account, latest last.

use crate::event::*;
use crate::{AccountId, Aggregate, DomainEvent, Now};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdentityLinks {
    /// The account linked last.
    pub latest: Option<AccountId>,
}

#[derive(Clone, Debug)]
pub struct Link {
    pub identity: String,
    pub account_id: AccountId,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the identity is already linked to that account")]
    AlreadyLinked,
}

impl Aggregate for IdentityLinks {
    const READS_PERSONAL_DATA: bool = false;
    type Command = Link;
    type Error = LinkError;

    fn decide(&self, c: Link, now: Now) -> Result<Vec<DomainEvent>, LinkError> {
        if self.latest == Some(c.account_id) {
            return Err(LinkError::AlreadyLinked);
        }
        Ok(vec![InstagramIdentityLinked {
            identity: c.identity,
            account_id: c.account_id,
            linked_at: now,
        }
        .into()])
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        if let DomainEvent::InstagramIdentityLinked(l) = event {
            self.latest = Some(l.account_id);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    #[test]
    fn the_latest_link_wins_and_is_not_repeated() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let (a, b) = (
            AccountId(uuid::Uuid::from_u128(1)),
            AccountId(uuid::Uuid::from_u128(2)),
        );
        let link = |account_id| Link {
            identity: "h".into(),
            account_id,
        };
        let first = given::<IdentityLinks>([])
            .when(link(a), now)
            .result()
            .expect("accepted");
        given::<IdentityLinks>(first.clone())
            .when(link(a), now)
            .then_err(LinkError::AlreadyLinked);
        let second = given::<IdentityLinks>(first.clone())
            .when(link(b), now)
            .result()
            .expect("accepted");
        let state = IdentityLinks::fold(first.iter().chain(&second));
        assert_eq!(state.latest, Some(b));
    }
}
