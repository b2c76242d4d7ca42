//! `accounts`: one document per account — profile (opened personal data), status, how many
//! widgets it created (the widgets themselves are the `widgets` view by owner). Erasing the profile blanks it; a purged account is a tombstone.

use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::{Category, DomainEvent};
use lightwidget_store::{format_time, DocChange, RecordedEvent, ViewDoc};
use serde::{Deserialize, Serialize};

pub struct Accounts;

pub const VIEW: &str = "accounts";

fn account_key(e: &DomainEvent) -> Option<String> {
    Some(match e {
        DomainEvent::AccountRegistered(e) => e.account_id.to_string(),
        DomainEvent::AccountSignedIn(e) => e.account_id.to_string(),
        DomainEvent::AccountDeletionRequested(e) => e.account_id.to_string(),
        DomainEvent::AccountRestored(e) => e.account_id.to_string(),
        DomainEvent::AccountBlocked(e) => e.account_id.to_string(),
        DomainEvent::AccountUnblocked(e) => e.account_id.to_string(),
        DomainEvent::AccountPurged(e) => e.account_id.to_string(),
        DomainEvent::WidgetCreated(e) => e.account_id.to_string(),
        // Erased, or archived under a legal hold (R21): no longer served either way.
        _ => match e.withdrawn() {
            Some(w) if w.category == Category::Profile => w.account_id?.to_string(),
            _ => return None,
        },
    })
}

/// Where an account stands, as clients see it: purged, then blocked, then quarantined, else
/// active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    #[default]
    Active,
    Blocked,
    Quarantined,
    Purged,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Active => "active",
            AccountState::Blocked => "blocked",
            AccountState::Quarantined => "quarantined",
            AccountState::Purged => "purged",
        }
    }
}

/// An account's document. Times are RFC 3339 text as stored; the profile fields are `None`
/// once erased.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountDoc {
    pub account_id: String,
    pub username: Option<String>,
    pub instagram_user_id: Option<String>,
    pub profile_picture_url: Option<String>,
    pub account_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sign_in_at: Option<String>,
    pub quarantine_until: Option<String>,
    pub blocked_until: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub purged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub profile_erased: bool,
    /// How many widgets the account created (they are the `widgets` view by owner).
    pub widget_count: u64,
    pub status: AccountState,
}

impl AccountDoc {
    fn state(&self) -> AccountState {
        if self.purged {
            AccountState::Purged
        } else if self.blocked_until.is_some() {
            AccountState::Blocked
        } else if self.quarantine_until.is_some() {
            AccountState::Quarantined
        } else {
            AccountState::Active
        }
    }

    fn erase_profile(&mut self) {
        self.username = None;
        self.instagram_user_id = None;
        self.profile_picture_url = None;
        self.account_type = None;
        self.profile_erased = true;
    }
}

impl Projection for Accounts {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "AccountRegistered",
            "AccountSignedIn",
            "AccountDeletionRequested",
            "AccountRestored",
            "AccountBlocked",
            "AccountUnblocked",
            "AccountPurged",
            "WidgetCreated",
            "PersonalDataErased",
            "PersonalDataArchived",
        ])
    }

    /// Keys come from the event alone.
    fn follows_references(&self) -> bool {
        false
    }

    /// Only a registration's profile is read; every other event (a new widget above all: one
    /// per `POST /v1/widgets`) is applied without looking up or unwrapping its keys.
    fn opens(&self, event_type: &str) -> bool {
        event_type == "AccountRegistered"
    }

    fn reads(&self, _e: &RecordedEvent, d: &DomainEvent, _loaded: &dyn ViewReader) -> Vec<String> {
        account_key(d).into_iter().collect()
    }

    fn handle(&self, _e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        let changes = changes(_e, d, view);
        view.apply(changes);
    }
}

fn changes(_e: &RecordedEvent, d: &DomainEvent, view: &dyn ViewReader) -> Vec<DocChange> {
    let Some(key) = account_key(d) else {
        return vec![];
    };
    let mut doc = match view.get(&key).map(ViewDoc::read::<AccountDoc>) {
        None => AccountDoc {
            account_id: key.clone(),
            ..AccountDoc::default()
        },
        Some(Ok(doc)) => doc,
        Some(Err(err)) => {
            tracing::error!(error = %err, "an account document does not read");
            return vec![];
        }
    };
    match d {
        DomainEvent::AccountRegistered(e) => {
            let p = e.profile.value();
            doc.username = p.map(|p| p.username.clone());
            doc.instagram_user_id = p.map(|p| p.instagram_user_id.clone());
            doc.profile_picture_url = p.and_then(|p| p.profile_picture_url.clone());
            doc.account_type = p.map(|p| p.account_type.clone());
            doc.registered_at = Some(format_time(e.registered_at));
            if e.profile.is_erased() {
                doc.erase_profile();
            }
        }
        DomainEvent::AccountSignedIn(e) => doc.last_sign_in_at = Some(format_time(e.signed_in_at)),
        DomainEvent::AccountDeletionRequested(e) => {
            doc.quarantine_until = Some(format_time(e.quarantine_until))
        }
        DomainEvent::AccountRestored(_) => doc.quarantine_until = None,
        DomainEvent::AccountBlocked(e) => doc.blocked_until = Some(format_time(e.hold_until)),
        DomainEvent::AccountUnblocked(_) => doc.blocked_until = None,
        DomainEvent::AccountPurged(e) => {
            doc.erase_profile();
            doc.purged = true;
            doc.purged_at = Some(format_time(e.purged_at));
        }
        // The count only: the account's widgets are the `widgets` view by owner (an
        // indexed column); a list here would make this document grow with every widget.
        DomainEvent::WidgetCreated(_) => doc.widget_count += 1,
        _ if d.withdrawn().is_some() => doc.erase_profile(),
        _ => {}
    }
    doc.status = doc.state();
    match ViewDoc::typed(key.clone(), &doc) {
        Ok(out) => vec![DocChange::Put(out.owner(key).state(doc.status.as_str()))],
        Err(_) => vec![],
    }
}
