//! The retention policy as data: one rule per category of POLICY.md, loaded from TOML with
//! the built-in defaults (`policy.default.toml`) underneath. Every rule is validated when the
//! policy loads: an unknown category, an unknown field, or a duration that is not a positive
//! `<n><unit>` refuses the whole file, naming what is wrong.

use chrono::{DateTime, Datelike, Duration, Months, TimeZone, Utc};
use lightwidget_domain::Category;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The built-in policy file.
pub const DEFAULT_POLICY: &str = include_str!("../policy.default.toml");

/// A period: whole months (calendar-aware) or a fixed number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Years(u32),
    Months(u32),
    Days(u32),
    Hours(u32),
    Minutes(u32),
}

impl Period {
    /// Parses `<n><unit>`: m, h, d, mo, y. `n` must be a positive whole number.
    pub fn parse(text: &str) -> Result<Period, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{text}` has no unit (use m, h, d, mo or y)"))?;
        let (n, unit) = text.split_at(split);
        let n: u32 = n
            .parse()
            .map_err(|_| format!("`{text}` must start with a positive whole number"))?;
        if n == 0 {
            return Err(format!("`{text}` must be longer than zero"));
        }
        match unit {
            "m" => Ok(Period::Minutes(n)),
            "h" => Ok(Period::Hours(n)),
            "d" => Ok(Period::Days(n)),
            "mo" => Ok(Period::Months(n)),
            "y" if n <= 1000 => Ok(Period::Years(n)),
            "y" => Err(format!("`{text}` is too long")),
            other => Err(format!(
                "`{text}` has unknown unit `{other}` (use m, h, d, mo or y)"
            )),
        }
    }

    pub fn after(&self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Period::Years(y) => Period::Months(y * 12).after(start),
            Period::Months(m) => start
                .checked_add_months(Months::new(*m))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Period::Days(d) => start + Duration::days(i64::from(*d)),
            Period::Hours(h) => start + Duration::hours(i64::from(*h)),
            Period::Minutes(m) => start + Duration::minutes(i64::from(*m)),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Years(1) => f.write_str("1 year"),
            Period::Years(y) => write!(f, "{y} years"),
            Period::Months(1) => f.write_str("1 month"),
            Period::Months(m) => write!(f, "{m} months"),
            Period::Days(1) => f.write_str("1 day"),
            Period::Days(d) => write!(f, "{d} days"),
            Period::Hours(1) => f.write_str("1 hour"),
            Period::Hours(h) => write!(f, "{h} hours"),
            Period::Minutes(1) => f.write_str("1 minute"),
            Period::Minutes(m) => write!(f, "{m} minutes"),
        }
    }
}

/// The rule of one category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub category: Category,
    pub keep: Period,
    pub round_to_year_end: bool,
}

impl Rule {
    /// When data whose clock started at `start` falls due for erasure. With
    /// `round_to_year_end` the data is kept through 31 December of the year the period ends
    /// in, so it falls due at the first instant of the next year.
    pub fn due_at(&self, start: DateTime<Utc>) -> DateTime<Utc> {
        let end = self.keep.after(start);
        if !self.round_to_year_end {
            return end;
        }
        Utc.with_ymd_and_hms(end.year() + 1, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The rule's name as recorded in erasure events, e.g. `profile:90 days`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.category, self.keep)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the retention policy is not valid TOML: {0}")]
    Syntax(String),
    #[error("the retention policy names an unknown category `{0}`")]
    UnknownCategory(String),
    #[error("retention rule `{category}`: {message}")]
    BadRule { category: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    keep: String,
    #[serde(default)]
    round_to_year_end: bool,
}

/// One rule for every category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    rules: BTreeMap<Category, Rule>,
}

impl RetentionPolicy {
    /// The defaults of POLICY.md.
    pub fn defaults() -> Self {
        // The built-in file is tested to parse and to cover every category.
        Self::parse_over(DEFAULT_POLICY, BTreeMap::new()).unwrap_or_else(|_| RetentionPolicy {
            rules: BTreeMap::new(),
        })
    }

    /// The defaults with the tables of `text` laid over them.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        Self::parse_over(text, Self::defaults().rules)
    }

    fn parse_over(text: &str, mut rules: BTreeMap<Category, Rule>) -> Result<Self, PolicyError> {
        let tables: BTreeMap<String, toml::Value> =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.message().to_owned()))?;
        for (name, value) in tables {
            let category: Category = name
                .parse()
                .map_err(|_| PolicyError::UnknownCategory(name.clone()))?;
            let bad = |message: String| PolicyError::BadRule {
                category: name.clone(),
                message,
            };
            let file: RuleFile = value
                .try_into()
                .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
            let keep = Period::parse(&file.keep).map_err(bad)?;
            rules.insert(
                category,
                Rule {
                    category,
                    keep,
                    round_to_year_end: file.round_to_year_end,
                },
            );
        }
        if let Some(missing) = Category::ALL.iter().find(|c| !rules.contains_key(c)) {
            return Err(PolicyError::BadRule {
                category: missing.to_string(),
                message: "no rule for this category".into(),
            });
        }
        Ok(RetentionPolicy { rules })
    }

    /// Loads `LW_POLICY_FILE`-style: the defaults, overridden by the file when one is named.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, PolicyError> {
        match path {
            None => Ok(Self::defaults()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    PolicyError::Syntax(format!("cannot read {}: {e}", p.display()))
                })?;
                Self::from_toml(&text)
            }
        }
    }

    pub fn rule(&self, category: Category) -> &Rule {
        // Construction guarantees a rule for every category.
        &self.rules[&category]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn built_in_defaults_are_the_policy_table() {
        let p = RetentionPolicy::from_toml("").expect("defaults parse");
        assert_eq!(p, RetentionPolicy::defaults());
        let t = at(2026, 3, 10, 9, 0);
        let due = |c| p.rule(c).due_at(t);
        assert_eq!(due(Category::Preview), at(2026, 3, 10, 9, 15));
        assert_eq!(due(Category::MediaCache), at(2026, 3, 11, 9, 0));
        assert_eq!(due(Category::Profile), at(2026, 6, 8, 9, 0));
        assert_eq!(due(Category::WidgetContent), at(2026, 6, 8, 9, 0));
        assert_eq!(due(Category::Statistics), at(2026, 6, 8, 9, 0));
        assert_eq!(due(Category::AccessLog), at(2027, 3, 10, 9, 0));
        assert_eq!(due(Category::CommentIp), at(2027, 3, 10, 9, 0));
        assert_eq!(due(Category::Support), at(2028, 3, 10, 9, 0));
        assert_eq!(due(Category::Security), at(2027, 3, 10, 9, 0));
        // An invoice of 2026 is kept to the end of 2031 (R19).
        assert_eq!(due(Category::Billing), at(2032, 1, 1, 0, 0));
        assert_eq!(
            p.rule(Category::Billing).due_at(at(2026, 12, 31, 23, 59)),
            at(2032, 1, 1, 0, 0)
        );
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let p = RetentionPolicy::from_toml("[access_log]\nkeep = \"6mo\"\n").expect("parse");
        assert_eq!(p.rule(Category::AccessLog).keep, Period::Months(6));
        assert_eq!(p.rule(Category::Profile).keep, Period::Days(90));
    }

    #[test]
    fn invalid_files_are_refused_naming_the_problem() {
        assert_eq!(
            RetentionPolicy::from_toml("[selfies]\nkeep = \"1d\"\n"),
            Err(PolicyError::UnknownCategory("selfies".into()))
        );
        for (text, needle) in [
            ("[profile]\nkeep = \"-5d\"\n", "positive"),
            ("[profile]\nkeep = \"0d\"\n", "longer than zero"),
            ("[profile]\nkeep = \"5 weeks\"\n", "unknown unit"),
            ("[profile]\nkeep = \"90\"\n", "no unit"),
            ("[profile]\nkept = \"90d\"\n", "unknown field"),
        ] {
            match RetentionPolicy::from_toml(text) {
                Err(PolicyError::BadRule { category, message }) => {
                    assert_eq!(category, "profile");
                    assert!(message.contains(needle), "{text}: {message}");
                }
                other => panic!("{text}: expected a bad rule, got {other:?}"),
            }
        }
        assert!(matches!(
            RetentionPolicy::from_toml("[profile"),
            Err(PolicyError::Syntax(_))
        ));
    }

    #[test]
    fn rule_names_and_periods_read_well() {
        let p = RetentionPolicy::defaults();
        assert_eq!(p.rule(Category::Profile).name(), "profile:90 days");
        assert_eq!(p.rule(Category::Billing).name(), "billing:5 years");
        assert_eq!(p.rule(Category::Preview).name(), "preview:15 minutes");
        assert_eq!(p.rule(Category::MediaCache).name(), "media_cache:24 hours");
        assert_eq!(p.rule(Category::AccessLog).name(), "access_log:12 months");
        assert_eq!(p.rule(Category::Support).name(), "support:24 months");
        assert_eq!(
            Period::parse("1y").map(|p| p.to_string()),
            Ok("1 year".into())
        );
        assert_eq!(
            Period::parse("1d").map(|p| p.to_string()),
            Ok("1 day".into())
        );
    }
}
