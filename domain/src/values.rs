//! Values that passed their checks: widget settings, billing details, support requests,
//! staff names and the free text people send. Each is made by a constructor that refuses a
//! bad value with an [`Invalid`] naming the field, so code that holds one cannot hold a bad
//! one, whoever called it (HTTP, a CLI, a test).

use crate::event::{BillingDetails, Layout, SupportRequest, WidgetSettings};

/// A refused value: the field at fault (a path such as `billing.email`) and what is wrong
/// with it. The message never repeats the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// A required text: trimmed, 1 to `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max {
        return Err(Invalid::new(
            field,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(v.to_owned())
}

/// An optional text: absent or blank is not filled in (and not kept).
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, Invalid> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => text(field, v, max).map(Some),
    }
}

/// A staff member's name: 1 to 200 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffName(String);

impl StaffName {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        text("name", value, 200).map(StaffName)
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A comment as its author sent it: the author's name (1–100) and the text (1–5,000).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentText {
    pub author: String,
    pub text: String,
}

impl CommentText {
    pub fn parse(author: &str, text: &str) -> Result<Self, Invalid> {
        Ok(CommentText {
            author: self::text("author", author, 100)?,
            text: self::text("text", text, 5000)?,
        })
    }
}

/// An e-mail address in the plain `local@domain.tld` form, at most 254 characters.
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && s.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn layout(s: &str) -> Result<Layout, Invalid> {
    match s {
        "grid" => Ok(Layout::Grid),
        "slider" => Ok(Layout::Slider),
        "masonry" => Ok(Layout::Masonry),
        "list" => Ok(Layout::List),
        _ => Err(Invalid::new(
            "layout",
            "layout must be one of grid, slider, masonry, list",
        )),
    }
}

fn title(s: &str) -> Result<String, Invalid> {
    text("title", s, 200)
}

fn columns(n: i64) -> Result<u8, Invalid> {
    if !(1..=12).contains(&n) {
        return Err(Invalid::new("columns", "columns must be 1 to 12"));
    }
    Ok(n as u8)
}

impl WidgetSettings {
    /// Settings from what a client sent: a title of 1 to 200 characters, a layout (`grid`,
    /// `slider`, `masonry`, `list`) and 1 to 12 columns.
    pub fn parse(title: &str, layout: &str, columns: i64) -> Result<Self, Invalid> {
        Ok(WidgetSettings {
            title: self::title(title)?,
            layout: self::layout(layout)?,
            columns: self::columns(columns)?,
        })
    }

    /// These settings with the fields `patch` names replaced.
    pub fn patched(self, patch: SettingsPatch) -> Self {
        WidgetSettings {
            title: patch.title.unwrap_or(self.title),
            layout: patch.layout.unwrap_or(self.layout),
            columns: patch.columns.unwrap_or(self.columns),
        }
    }
}

/// The settings a patch changes, each checked as in [`WidgetSettings::parse`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    title: Option<String>,
    layout: Option<Layout>,
    columns: Option<u8>,
}

impl SettingsPatch {
    pub fn parse(
        title: Option<&str>,
        layout: Option<&str>,
        columns: Option<i64>,
    ) -> Result<Self, Invalid> {
        Ok(SettingsPatch {
            title: title.map(self::title).transpose()?,
            layout: layout.map(self::layout).transpose()?,
            columns: columns.map(self::columns).transpose()?,
        })
    }
}

/// VAT ID formats of the countries that have one: `#` a digit, `?` a letter or digit, `@`
/// a letter, anything else itself.
const VAT_FORMATS: &[(&str, &[&str])] = &[
    ("AT", &["ATU########"]),
    ("BE", &["BE##########"]),
    ("CZ", &["CZ########", "CZ#########", "CZ##########"]),
    ("DE", &["DE#########"]),
    ("DK", &["DK########"]),
    ("ES", &["ES?#######?"]),
    ("FI", &["FI########"]),
    ("FR", &["FR??#########"]),
    ("GB", &["GB#########", "GB############"]),
    ("IE", &["IE#######@", "IE#######@@", "IE#?#####@"]),
    ("IT", &["IT###########"]),
    ("NL", &["NL#########B##"]),
    ("PL", &["PL##########"]),
    ("PT", &["PT#########"]),
    ("SE", &["SE############"]),
];

fn matches_format(id: &str, format: &str) -> bool {
    id.len() == format.len()
        && id.chars().zip(format.chars()).all(|(c, f)| match f {
            '#' => c.is_ascii_digit(),
            '?' => c.is_ascii_alphanumeric(),
            '@' => c.is_ascii_uppercase(),
            f => c == f,
        })
}

/// The billing form as a client fills it in, before its checks.
#[derive(Clone, Copy, Debug)]
pub struct BillingForm<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub email: &'a str,
    pub vat_id: Option<&'a str>,
    pub country: &'a str,
}

impl BillingDetails {
    /// Billing details from the form (R10): a name and an address, an e-mail address, an
    /// ISO 3166 two-letter country, and a VAT ID in that country's format when one is given.
    /// Fields are named `billing.<field>`.
    pub fn parse(form: BillingForm<'_>) -> Result<Self, Invalid> {
        let name = text("billing.name", form.name, 200)?;
        let address = text("billing.address", form.address, 500)?;
        let email = form.email.trim().to_owned();
        if !valid_email(&email) {
            return Err(Invalid::new(
                "billing.email",
                "billing.email is not an e-mail address",
            ));
        }
        let country = form.country.trim().to_owned();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Invalid::new(
                "billing.country",
                "billing.country must be an ISO 3166 two-letter code, like DE",
            ));
        }
        let vat_id = match form.vat_id.map(str::trim).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => {
                let id: String = v
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .to_ascii_uppercase();
                let ok = match VAT_FORMATS.iter().find(|(c, _)| *c == country) {
                    Some((_, formats)) => formats.iter().any(|f| matches_format(&id, f)),
                    None => {
                        (4..=20).contains(&id.len())
                            && id.chars().all(|c| c.is_ascii_alphanumeric())
                    }
                };
                if !ok {
                    return Err(Invalid::new(
                        "billing.vat_id",
                        "billing.vat_id is not in the VAT ID format of billing.country",
                    ));
                }
                Some(id)
            }
        };
        Ok(BillingDetails {
            name,
            address,
            email,
            vat_id,
            country,
        })
    }
}

impl SupportRequest {
    /// A support ticket's fields (R4): the e-mail address is required; the subject (up to
    /// 200 characters) and the message (up to 10,000) only when filled in.
    pub fn parse(
        email: Option<&str>,
        subject: Option<&str>,
        message: Option<&str>,
    ) -> Result<Self, Invalid> {
        let email = email.map(str::trim).unwrap_or_default();
        if email.is_empty() {
            return Err(Invalid::new("email", "email is required"));
        }
        if !valid_email(email) {
            return Err(Invalid::new("email", "email is not an e-mail address"));
        }
        Ok(SupportRequest {
            email: email.to_owned(),
            subject: optional_text("subject", subject, 200)?,
            message: optional_text("message", message, 10_000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form<'a>(country: &'a str, vat_id: Option<&'a str>) -> BillingForm<'a> {
        BillingForm {
            name: "Dora",
            address: "Street 1",
            email: "dora@example.com",
            vat_id,
            country,
        }
    }

    #[test]
    fn vat_ids_follow_their_country() {
        assert!(matches_format("PL5260250274", "PL##########"));
        assert!(!matches_format("PL526025027", "PL##########"));
        assert!(matches_format("NL123456789B01", "NL#########B##"));
        assert!(BillingDetails::parse(form("PL", Some("pl 5260250274"))).is_ok());
        let e = BillingDetails::parse(form("PL", Some("5260250274"))).expect_err("refused");
        assert_eq!(e.field, "billing.vat_id");
    }

    #[test]
    fn each_refusal_names_its_field() {
        let field = |r: Result<BillingDetails, Invalid>| r.expect_err("refused").field;
        assert_eq!(
            field(BillingDetails::parse(form("de", None))),
            "billing.country"
        );
        let mut f = form("DE", None);
        f.email = "no-at-sign";
        assert_eq!(field(BillingDetails::parse(f)), "billing.email");
        f = form("DE", None);
        f.name = "  ";
        assert_eq!(field(BillingDetails::parse(f)), "billing.name");
        assert_eq!(
            WidgetSettings::parse("t", "grid", 13)
                .expect_err("refused")
                .field,
            "columns"
        );
        assert_eq!(
            WidgetSettings::parse("t", "tiles", 3)
                .expect_err("refused")
                .field,
            "layout"
        );
        assert_eq!(
            WidgetSettings::parse(&"x".repeat(201), "grid", 3)
                .expect_err("refused")
                .field,
            "title"
        );
        assert_eq!(
            SupportRequest::parse(None, None, None)
                .expect_err("refused")
                .field,
            "email"
        );
        assert_eq!(StaffName::parse("").expect_err("refused").field, "name");
        assert_eq!(
            CommentText::parse("a", "").expect_err("refused").field,
            "text"
        );
    }

    #[test]
    fn a_patch_keeps_what_it_does_not_name() {
        let s = WidgetSettings::parse(" Feed ", "grid", 3).expect("accepted");
        assert_eq!(s.title, "Feed");
        let patch = SettingsPatch::parse(None, Some("list"), None).expect("accepted");
        let p = s.patched(patch);
        assert_eq!(
            (p.title.as_str(), p.layout, p.columns),
            ("Feed", Layout::List, 3)
        );
        let refused = SettingsPatch::parse(None, None, Some(0)).expect_err("refused");
        assert_eq!(refused.field, "columns");
    }

    #[test]
    fn blank_optional_fields_are_not_kept() {
        let r = SupportRequest::parse(Some(" a@b.co "), Some("  "), Some("hi")).expect("accepted");
        assert_eq!(r.email, "a@b.co");
        assert_eq!(r.subject, None);
        assert_eq!(r.message.as_deref(), Some("hi"));
    }
}
