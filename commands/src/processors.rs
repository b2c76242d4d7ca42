//! The processor registry (R12): who receives which categories of personal data, as the
//! checked-in `processors.toml` lists them. Loaded and checked at start; every code path
//! that hands personal data to a processor asks [`Registry::check`] first.

use lightwidget_domain::Category;
use serde::Deserialize;

/// The registry as checked in.
pub const DEFAULT_REGISTRY: &str = include_str!("../processors.toml");

/// A processor and what it receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processor {
    /// How the code names it: `hosting`, `backups`, `cdn`, `email`, `ticketing`,
    /// `analytics`, `payments`.
    pub kind: String,
    pub name: String,
    pub purpose: String,
    pub region: String,
    pub categories: Vec<Category>,
}

/// Every processor the policy names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    processors: Vec<Processor>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("the processor registry is not valid TOML: {0}")]
    Syntax(String),
    #[error("processor `{processor}` lists `{category}`, which is no category of personal data")]
    UnknownCategory { processor: String, category: String },
    #[error("processor `{0}` is listed twice")]
    Duplicate(String),
    #[error("the registry lists no processor")]
    Empty,
}

/// A hand-over the registry does not allow.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("processor `{processor}` may not receive `{category}` personal data (R12)")]
pub struct NotListed {
    pub processor: String,
    pub category: Category,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    processor: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    kind: String,
    name: String,
    purpose: String,
    region: String,
    categories: Vec<String>,
}

impl Registry {
    /// Parses and checks a registry file.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let file: File = toml::from_str(text).map_err(|e| RegistryError::Syntax(e.to_string()))?;
        let mut processors: Vec<Processor> = Vec::new();
        for e in file.processor {
            if processors.iter().any(|p| p.kind == e.kind) {
                return Err(RegistryError::Duplicate(e.kind));
            }
            let categories = e
                .categories
                .iter()
                .map(|c| {
                    c.parse::<Category>()
                        .map_err(|_| RegistryError::UnknownCategory {
                            processor: e.kind.clone(),
                            category: c.clone(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            processors.push(Processor {
                kind: e.kind,
                name: e.name,
                purpose: e.purpose,
                region: e.region,
                categories,
            });
        }
        if processors.is_empty() {
            return Err(RegistryError::Empty);
        }
        Ok(Registry { processors })
    }

    /// The registry as checked in.
    pub fn checked_in() -> Result<Self, RegistryError> {
        Self::parse(DEFAULT_REGISTRY)
    }

    pub fn processors(&self) -> &[Processor] {
        &self.processors
    }

    /// Whether `processor` may receive personal data of `category`.
    pub fn check(&self, processor: &str, category: Category) -> Result<(), NotListed> {
        let listed = self
            .processors
            .iter()
            .any(|p| p.kind == processor && p.categories.contains(&category));
        if listed {
            Ok(())
        } else {
            Err(NotListed {
                processor: processor.to_owned(),
                category,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_registry_names_every_processor_of_the_policy() {
        let r = Registry::checked_in().expect("valid");
        let names: Vec<&str> = r.processors().iter().map(|p| p.name.as_str()).collect();
        for name in [
            "Hetzner Online",
            "Amazon Web Services",
            "Cloudflare",
            "SendGrid",
            "Zendesk",
            "Google Analytics",
            "PayPal",
        ] {
            assert!(names.contains(&name), "{name} missing: {names:?}");
        }
    }

    #[test]
    fn the_hosting_stores_every_category() {
        // Everything the ledger keeps lives on the hosting's machines: a category added to
        // the policy must be added to the hosting's entry too.
        let r = Registry::checked_in().expect("valid");
        for c in Category::ALL {
            assert_eq!(r.check("hosting", c), Ok(()), "{c}");
        }
    }

    #[test]
    fn a_hand_over_not_listed_is_refused() {
        let r = Registry::checked_in().expect("valid");
        assert_eq!(r.check("ticketing", Category::Support), Ok(()));
        assert_eq!(r.check("cdn", Category::WidgetContent), Ok(()));
        let refused = r
            .check("ticketing", Category::Billing)
            .expect_err("not listed");
        assert_eq!(refused.category, Category::Billing);
        assert!(r.check("analytics", Category::AccessLog).is_err());
        assert!(r.check("nobody", Category::Profile).is_err());
    }

    #[test]
    fn an_unknown_category_or_a_twice_listed_processor_is_refused() {
        let unknown = "[[processor]]\nkind = \"x\"\nname = \"X\"\npurpose = \"p\"\nregion = \"r\"\ncategories = [\"passwords\"]\n";
        assert_eq!(
            Registry::parse(unknown),
            Err(RegistryError::UnknownCategory {
                processor: "x".into(),
                category: "passwords".into()
            })
        );
        let ok = "[[processor]]\nkind = \"x\"\nname = \"X\"\npurpose = \"p\"\nregion = \"r\"\ncategories = []\n";
        assert!(Registry::parse(ok).is_ok());
        let twice = format!("{ok}{ok}");
        assert_eq!(
            Registry::parse(&twice),
            Err(RegistryError::Duplicate("x".into()))
        );
        assert_eq!(Registry::parse("processor = []"), Err(RegistryError::Empty));
        assert!(matches!(
            Registry::parse("not toml ["),
            Err(RegistryError::Syntax(_))
        ));
    }
}
