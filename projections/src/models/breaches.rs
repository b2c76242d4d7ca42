//! `breaches`: the breach register (R16). One document per breach (owner `register`),
//! with its 72-hour deadline as the due date while the authority has not been told, so the
//! overdue ones are the register's items due before now; and one document per affected
//! account and breach (owner: the account), for the account's owner to read.

use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::{AccountId, BreachId, Category, DomainEvent};
use lightwidget_store::{format_time, RecordedEvent, ViewDoc};
use serde::{Deserialize, Serialize};

pub struct Breaches;

pub const VIEW: &str = "breaches";

/// The owner of the breach documents themselves.
pub const REGISTER: &str = "register";

/// A breach in the register. Times are RFC 3339 text as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreachDoc {
    pub breach_id: BreachId,
    pub description: String,
    pub detected_at: String,
    pub notify_by: String,
    pub notified_at: Option<String>,
    pub authority: Option<String>,
    pub categories: Vec<Category>,
    pub affected_accounts: Vec<AccountId>,
}

/// A breach as an affected account's owner reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AffectedDoc {
    pub breach_id: BreachId,
    pub description: String,
    pub detected_at: String,
}

fn affected_key(account: AccountId, breach: BreachId) -> String {
    format!("account:{account}:{breach}")
}

fn breach_of(d: &DomainEvent) -> Option<BreachId> {
    match d {
        DomainEvent::BreachRecorded(b) => Some(b.breach_id),
        DomainEvent::BreachNotified(n) => Some(n.breach_id),
        _ => None,
    }
}

impl Projection for Breaches {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&["BreachRecorded", "BreachNotified"])
    }

    fn follows_references(&self) -> bool {
        false
    }

    fn reads(&self, _e: &RecordedEvent, d: &DomainEvent, _loaded: &dyn ViewReader) -> Vec<String> {
        breach_of(d)
            .map(|b| vec![b.to_string()])
            .unwrap_or_default()
    }

    fn handle(&self, _e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        match d {
            DomainEvent::BreachRecorded(b) => {
                let doc = BreachDoc {
                    breach_id: b.breach_id,
                    description: b.description.clone(),
                    detected_at: format_time(b.detected_at),
                    notify_by: format_time(b.notify_by),
                    notified_at: None,
                    authority: None,
                    categories: b.categories.clone(),
                    affected_accounts: b.affected_accounts.clone(),
                };
                if let Ok(out) = ViewDoc::typed(b.breach_id.to_string(), &doc) {
                    view.put(out.owner(REGISTER).state("open").due_at(b.notify_by));
                }
                for a in &b.affected_accounts {
                    let affected = AffectedDoc {
                        breach_id: b.breach_id,
                        description: b.description.clone(),
                        detected_at: format_time(b.detected_at),
                    };
                    if let Ok(out) = ViewDoc::typed(affected_key(*a, b.breach_id), &affected) {
                        view.put(out.owner(a.to_string()));
                    }
                }
            }
            DomainEvent::BreachNotified(n) => {
                let key = n.breach_id.to_string();
                let Some(Ok(mut doc)) = view.get(&key).map(ViewDoc::read::<BreachDoc>) else {
                    return;
                };
                doc.notified_at = Some(format_time(n.notified_at));
                doc.authority = Some(n.authority.clone());
                // Told: no longer due.
                if let Ok(out) = ViewDoc::typed(key, &doc) {
                    view.put(out.owner(REGISTER).state("notified"));
                }
            }
            _ => {}
        }
    }
}
