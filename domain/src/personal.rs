//! Personal data, marked by type.
//!
//! A field that holds personal data is a [`Personal<T>`]: the value together with its
//! *subject* (whose data it is, and whose data key seals it) and its *category* (which
//! retention rule of POLICY.md applies). On the wire a personal field is the object
//! `{"$personal": {"subject", "category", "value"}}`; the store finds these objects in an
//! event's payload and seals each `value` with the data key of `(subject, category)` before
//! anything is written. After that key is shredded the field reads back as
//! `{"$personal": {"subject", "category", "erased": true}}`, which deserializes to a
//! `Personal` whose value is gone.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The JSON key that marks a personal field. Only `Personal<T>` produces it.
pub const PERSONAL_MARKER: &str = "$personal";

/// The categories of POLICY.md's retention table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Preview,
    MediaCache,
    Profile,
    WidgetContent,
    Statistics,
    AccessLog,
    CommentIp,
    Support,
    Billing,
    Security,
    /// The name a commenter signs a comment with (R6).
    CommentAuthor,
    /// A visitor's analytics consent and the policy version it was given under (R3).
    Consent,
    /// Secrets a subject's data is reached with: the Instagram access token. Sealed under
    /// the profile's key (so erased with the profile, by construction) and never shown by
    /// any read: not to auditors, not in an export.
    Credentials,
}

/// In event schemas a category is a string: the list of categories is the policy's, and
/// grows without changing the shape of any event (decision 19). Decoding still refuses a
/// category it does not know.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for Category {
    fn schema_name() -> String {
        "Category".into()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        schemars::schema::SchemaObject {
            instance_type: Some(schemars::schema::InstanceType::String.into()),
            metadata: Some(Box::new(schemars::schema::Metadata {
                description: Some("A category of the retention policy (POLICY.md).".into()),
                ..Default::default()
            })),
            string: Some(Box::new(schemars::schema::StringValidation {
                pattern: Some("^[a-z][a-z_]*$".into()),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

impl Category {
    /// The category whose data key seals this one: credentials share the profile's.
    pub fn keyed_as(self) -> Category {
        match self {
            Category::Credentials => Category::Profile,
            c => c,
        }
    }

    /// Whether no read ever shows data of this category.
    pub fn is_withheld(self) -> bool {
        self == Category::Credentials
    }

    pub const ALL: [Category; 13] = [
        Category::Preview,
        Category::MediaCache,
        Category::Profile,
        Category::WidgetContent,
        Category::Statistics,
        Category::AccessLog,
        Category::CommentIp,
        Category::Support,
        Category::Billing,
        Category::Security,
        Category::CommentAuthor,
        Category::Consent,
        Category::Credentials,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Category::Preview => "preview",
            Category::MediaCache => "media_cache",
            Category::Profile => "profile",
            Category::WidgetContent => "widget_content",
            Category::Statistics => "statistics",
            Category::AccessLog => "access_log",
            Category::CommentIp => "comment_ip",
            Category::Support => "support",
            Category::Billing => "billing",
            Category::Security => "security",
            Category::CommentAuthor => "comment_author",
            Category::Consent => "consent",
            Category::Credentials => "credentials",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category `{s}`"))
    }
}

/// Whose data a personal field is, and so which data key seals it: `kind:id`, for example
/// `account:3f…`, `widget:9a…`, `order:…`, `visitor:…`. A subject is as fine-grained as the
/// retention clock it shares: a widget's content has its own subject so that deleting one
/// widget erases that widget alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Subject(String);

impl Subject {
    pub fn new(kind: &str, id: impl fmt::Display) -> Self {
        Subject(format!("{kind}:{id}"))
    }
    pub fn account(id: crate::AccountId) -> Self {
        Self::new("account", id)
    }
    pub fn widget(id: crate::WidgetId) -> Self {
        Self::new("widget", id)
    }
    pub fn preview(id: crate::PreviewId) -> Self {
        Self::new("preview", id)
    }
    pub fn order(id: crate::OrderId) -> Self {
        Self::new("order", id)
    }
    pub fn staff(id: crate::StaffId) -> Self {
        Self::new("staff", id)
    }
    /// One fetch of a widget's Instagram media (R7): each fetch has its own key, so that the
    /// erasure of an old fetch leaves a newer one alone.
    pub fn media(widget: crate::WidgetId, fetched_at: chrono::DateTime<chrono::Utc>) -> Self {
        Self::new(
            "media",
            format!("{widget}:{}", fetched_at.timestamp_micros()),
        )
    }
    pub fn comment(id: crate::CommentId) -> Self {
        Self::new("comment", id)
    }
    pub fn ticket(id: crate::TicketId) -> Self {
        Self::new("ticket", id)
    }
    /// A visitor of the public pages, known only by the id its browser made (R3).
    pub fn visitor(id: crate::VisitorId) -> Self {
        Self::new("visitor", id)
    }
    /// The access-log bucket of a widget's views and clicks in one calendar month: one key
    /// per bucket, shredded whole once the month's last entry is 12 months old (R1).
    pub fn access_log(widget: crate::WidgetId, at: chrono::DateTime<chrono::Utc>) -> Self {
        Self::new("accesslog", format!("{widget}:{}", at.format("%Y-%m")))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Parses `kind:id`; both parts must be non-empty.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, id) = s.split_once(':')?;
        (!kind.is_empty() && !id.is_empty()).then(|| Subject(s.to_owned()))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value that is personal data of `subject` in `category`. Its `Debug` never prints the
/// value, so a personal field cannot leak into a log line through `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Personal<T> {
    subject: Subject,
    category: Category,
    value: Option<T>,
}

impl<T> Personal<T> {
    pub fn new(subject: Subject, category: Category, value: T) -> Self {
        Personal {
            subject,
            category,
            value: Some(value),
        }
    }
    /// A field whose data key has been shredded.
    pub fn erased(subject: Subject, category: Category) -> Self {
        Personal {
            subject,
            category,
            value: None,
        }
    }
    pub fn subject(&self) -> &Subject {
        &self.subject
    }
    pub fn category(&self) -> Category {
        self.category
    }
    /// The value, or `None` once erased.
    pub fn value(&self) -> Option<&T> {
        self.value.as_ref()
    }
    pub fn into_value(self) -> Option<T> {
        self.value
    }
    pub fn is_erased(&self) -> bool {
        self.value.is_none()
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.value.is_some() {
            "<personal>"
        } else {
            "<erased>"
        };
        write!(f, "Personal({}, {}, {shown})", self.subject, self.category)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inner<T> {
    subject: Subject,
    category: Category,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    value: Option<T>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    erased: bool,
    /// The stored (sealed) form, read by someone who does not open it: to that reader the
    /// field is erased. Only the store produces these two.
    #[serde(default, skip_serializing)]
    #[allow(dead_code)]
    key_id: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    sealed: Option<serde::de::IgnoredAny>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<T> {
    #[serde(rename = "$personal")]
    inner: Inner<T>,
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct InnerRef<'a, T> {
            subject: &'a Subject,
            category: Category,
            #[serde(skip_serializing_if = "Option::is_none")]
            value: Option<&'a T>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            erased: bool,
        }
        #[derive(Serialize)]
        struct WireRef<'a, T> {
            #[serde(rename = "$personal")]
            inner: InnerRef<'a, T>,
        }
        WireRef {
            inner: InnerRef {
                subject: &self.subject,
                category: self.category,
                value: self.value.as_ref(),
                erased: self.value.is_none(),
            },
        }
        .serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::<T>::deserialize(d)?;
        let Inner {
            subject,
            category,
            value,
            erased,
            sealed,
            ..
        } = wire.inner;
        match (value, erased || sealed.is_some()) {
            (Some(v), false) => Ok(Personal::new(subject, category, v)),
            (None, true) => Ok(Personal::erased(subject, category)),
            _ => Err(serde::de::Error::custom(
                "a personal field holds either a value or `erased: true`",
            )),
        }
    }
}

#[cfg(feature = "schema")]
impl<T: schemars::JsonSchema> schemars::JsonSchema for Personal<T> {
    fn schema_name() -> String {
        format!("Personal_{}", T::schema_name())
    }
    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Inner<T> {
            subject: Subject,
            category: Category,
            /// The value; absent once the data key was shredded.
            value: Option<T>,
            /// True once the data key was shredded.
            erased: Option<bool>,
        }
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Wire<T> {
            #[serde(rename = "$personal")]
            inner: Inner<T>,
        }
        Wire::<T>::json_schema(gen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_marks_the_field() {
        let p = Personal::new(
            Subject::new("account", "a1"),
            Category::Profile,
            "alice".to_string(),
        );
        let json = serde_json::to_value(&p).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"$personal": {"subject": "account:a1", "category": "profile", "value": "alice"}})
        );
        let back: Personal<String> = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back.value().map(String::as_str), Some("alice"));
    }

    #[test]
    fn erased_form_deserializes_without_value() {
        let json = serde_json::json!({"$personal": {"subject": "account:a1", "category": "profile", "erased": true}});
        let p: Personal<String> = serde_json::from_value(json).expect("deserialize");
        assert!(p.is_erased());
        assert_eq!(p.category(), Category::Profile);
    }

    #[test]
    fn the_sealed_form_reads_as_erased() {
        let json = serde_json::json!({"$personal": {"subject": "account:a1", "category": "profile", "key_id": "k", "sealed": "c2VjcmV0"}});
        let p: Personal<String> = serde_json::from_value(json).expect("deserialize");
        assert!(p.is_erased());
    }

    #[test]
    fn debug_never_shows_the_value() {
        let p = Personal::new(
            Subject::new("account", "a1"),
            Category::Profile,
            "secret-marker",
        );
        assert!(!format!("{p:?}").contains("secret-marker"));
    }

    #[test]
    fn rejects_value_and_erased_together() {
        let json = serde_json::json!({"$personal": {"subject": "a:1", "category": "profile", "value": "x", "erased": true}});
        assert!(serde_json::from_value::<Personal<String>>(json).is_err());
    }

    #[test]
    fn category_parses_its_own_names() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
        }
        assert!("nope".parse::<Category>().is_err());
    }
}
