//! `staff`: one document per staff member (owner `staff`): name (opened personal data,
//! blanked when erased), role, when they were added and when they were removed. No token
//! and no token hash is kept here: the list shows who holds a role, not how to act as them.

use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::event::Role;
use lightwidget_domain::{Category, DomainEvent, StaffId};
use lightwidget_store::{format_time, RecordedEvent, ViewDoc};
use serde::{Deserialize, Serialize};

pub struct Staff;

pub const VIEW: &str = "staff";

/// The owner of every document of the view.
pub const OWNER: &str = "staff";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaffDoc {
    pub staff_id: StaffId,
    /// `None` once erased.
    pub name: Option<String>,
    pub role: Role,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

fn staff_of(d: &DomainEvent) -> Option<String> {
    match d {
        DomainEvent::StaffAdded(e) => Some(e.staff_id.to_string()),
        DomainEvent::StaffRemoved(e) => Some(e.staff_id.to_string()),
        _ => match d.withdrawn() {
            Some(w) if w.category == Category::Profile => {
                w.subject.as_str().strip_prefix("staff:").map(str::to_owned)
            }
            _ => None,
        },
    }
}

impl Projection for Staff {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "StaffAdded",
            "StaffRemoved",
            "PersonalDataErased",
            "PersonalDataArchived",
        ])
    }

    fn follows_references(&self) -> bool {
        false
    }

    fn opens(&self, event_type: &str) -> bool {
        event_type == "StaffAdded"
    }

    fn reads(&self, _e: &RecordedEvent, d: &DomainEvent, _loaded: &dyn ViewReader) -> Vec<String> {
        staff_of(d).into_iter().collect()
    }

    fn handle(&self, _e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        let Some(key) = staff_of(d) else {
            return;
        };
        let doc = match d {
            DomainEvent::StaffAdded(e) => Some(StaffDoc {
                staff_id: e.staff_id,
                name: e.name.value().cloned(),
                role: e.role,
                created_at: format_time(e.added_at),
                revoked_at: None,
            }),
            _ => match view.get(&key).map(ViewDoc::read::<StaffDoc>) {
                Some(Ok(mut doc)) => {
                    match d {
                        DomainEvent::StaffRemoved(e) => {
                            doc.revoked_at = Some(format_time(e.removed_at))
                        }
                        _ => doc.name = None,
                    }
                    Some(doc)
                }
                _ => None,
            },
        };
        if let Some(Ok(out)) = doc.map(|doc| ViewDoc::typed(key, &doc)) {
            view.put(out.owner(OWNER));
        }
    }
}
