//! `accounts`: one document per account — profile (opened personal data), status, how many
//! widgets it created (the widgets themselves are the `widgets` view by owner). Erasing the profile blanks it; a purged account is a tombstone.

use super::time;
use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::{Category, DomainEvent};
use lightwidget_store::{DocChange, RecordedEvent, ViewDoc};
use serde_json::{json, Value};

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
        DomainEvent::PersonalDataErased(e) if e.category == Category::Profile => {
            e.account_id?.to_string()
        }
        _ => return None,
    })
}

/// The status shown to clients: purged, then blocked, then quarantined, else active.
fn status(doc: &Value) -> &'static str {
    if doc["purged"] == json!(true) {
        "purged"
    } else if !doc["blocked_until"].is_null() {
        "blocked"
    } else if !doc["quarantine_until"].is_null() {
        "quarantined"
    } else {
        "active"
    }
}

fn erase_profile(doc: &mut Value) {
    for f in [
        "username",
        "instagram_user_id",
        "profile_picture_url",
        "account_type",
    ] {
        doc[f] = Value::Null;
    }
    doc["profile_erased"] = json!(true);
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
    {
        let Some(key) = account_key(d) else {
            return vec![];
        };
        let mut doc = view.get(&key).map(|v| v.doc.clone()).unwrap_or_else(|| {
            json!({"account_id": key, "widget_count": 0, "quarantine_until": null, "blocked_until": null})
        });
        match d {
            DomainEvent::AccountRegistered(e) => {
                let p = e.profile.value();
                doc["username"] = json!(p.map(|p| &p.username));
                doc["instagram_user_id"] = json!(p.map(|p| &p.instagram_user_id));
                doc["profile_picture_url"] = json!(p.and_then(|p| p.profile_picture_url.as_ref()));
                doc["account_type"] = json!(p.map(|p| &p.account_type));
                doc["registered_at"] = time(e.registered_at);
                if e.profile.is_erased() {
                    erase_profile(&mut doc);
                }
            }
            DomainEvent::AccountSignedIn(e) => doc["last_sign_in_at"] = time(e.signed_in_at),
            DomainEvent::AccountDeletionRequested(e) => {
                doc["quarantine_until"] = time(e.quarantine_until)
            }
            DomainEvent::AccountRestored(_) => doc["quarantine_until"] = Value::Null,
            DomainEvent::AccountBlocked(e) => doc["blocked_until"] = time(e.hold_until),
            DomainEvent::AccountUnblocked(_) => doc["blocked_until"] = Value::Null,
            DomainEvent::AccountPurged(e) => {
                erase_profile(&mut doc);
                doc["purged"] = json!(true);
                doc["purged_at"] = time(e.purged_at);
            }
            // The count only: the account's widgets are the `widgets` view by owner (an
            // indexed column); a list here would make this document grow with every widget.
            DomainEvent::WidgetCreated(_) => {
                doc["widget_count"] = json!(doc["widget_count"].as_u64().unwrap_or(0) + 1);
            }
            DomainEvent::PersonalDataErased(_) => erase_profile(&mut doc),
            _ => {}
        }
        let state = status(&doc);
        doc["status"] = json!(state);
        vec![DocChange::Put(
            ViewDoc::new(key.clone(), doc).owner(key).state(state),
        )]
    }
}
