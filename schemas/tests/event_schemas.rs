//! The stored shape has an owner: every event payload's JSON Schema, generated from the
//! domain types, must equal the checked-in `events/<Type>.v<N>.json` of its current version.
//!
//! When a payload type changes, this test fails. The fix is never to edit a released schema:
//! bump the type's version in the domain's `events!` list, add an upcaster from the old
//! version in `src/lib.rs`, and run `LW_BLESS=1 cargo test -p lightwidget-schemas` to write
//! the new version's file. Blessing refuses to overwrite a released version.

use lightwidget_domain::event::{event_schemas, EVENT_TYPES};
use std::path::PathBuf;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events")
}

fn rendered(schema: &schemars::schema::RootSchema) -> String {
    let mut s = serde_json::to_string_pretty(schema).expect("schema serializes");
    s.push('\n');
    s
}

#[test]
fn every_event_schema_matches_its_checked_in_version() {
    let bless = std::env::var("LW_BLESS").is_ok_and(|v| v == "1");
    let mut problems = Vec::new();
    for (name, version, schema) in event_schemas() {
        let path = events_dir().join(format!("{name}.v{version}.json"));
        let now = rendered(&schema);
        match std::fs::read_to_string(&path) {
            Ok(stored) if stored == now => {}
            Ok(_) => problems.push(format!(
                "{name} v{version}: the type's shape changed but {} is released. Bump {name}'s \
                 version in domain/src/event.rs, add an upcaster from v{version}, then bless.",
                path.display()
            )),
            Err(_) if bless => std::fs::write(&path, now).expect("write schema"),
            Err(_) => problems.push(format!(
                "{name} v{version}: no schema file; run LW_BLESS=1 cargo test -p lightwidget-schemas"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_schema_file_belongs_to_a_known_event_version() {
    for entry in std::fs::read_dir(events_dir()).expect("events dir") {
        let file = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8 name");
        let stem = file
            .strip_suffix(".json")
            .expect("only .json files in events/");
        let (name, version) = stem.rsplit_once(".v").expect("<Type>.v<N>.json");
        let version: u32 = version.parse().expect("numeric version");
        let current = EVENT_TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{file}: no event type {name}"));
        assert!(
            version <= current,
            "{file}: newer than the type's current version {current}"
        );
    }
}

#[test]
fn every_old_version_has_an_upcaster() {
    for (name, current) in EVENT_TYPES {
        for v in 1..*current {
            assert!(
                lightwidget_schemas::has_upcaster(name, v),
                "{name} is at v{current} but has no upcaster from v{v}"
            );
        }
    }
}

#[test]
fn schemas_describe_personal_fields() {
    // A personal field is visible in the contract as the `$personal` wrapper.
    let registered = std::fs::read_to_string(events_dir().join("AccountRegistered.v1.json"))
        .expect("AccountRegistered schema");
    assert!(registered.contains("$personal"), "{registered}");
}

#[test]
fn a_comment_of_version_1_keeps_its_author_in_clear() {
    let v1 = r#"{"comment_id":"00000000-0000-0000-0000-000000000001","article":"a",
        "author":"Ann","text":"hi",
        "ip":{"$personal":{"subject":"comment:1","category":"comment_ip","erased":true}},
        "posted_at":"2026-01-01T00:00:00Z"}"#;
    for decoded in [
        lightwidget_schemas::decode_str("CommentPosted", 1, v1),
        lightwidget_schemas::upcast_and_decode(
            "CommentPosted",
            1,
            serde_json::from_str(v1).expect("json"),
        ),
    ] {
        match decoded.expect("a v1 comment decodes") {
            lightwidget_domain::DomainEvent::CommentPosted(c) => {
                assert_eq!(c.author.name(), Some("Ann"));
                assert!(matches!(
                    c.author,
                    lightwidget_domain::event::CommentAuthor::Clear(_)
                ));
            }
            other => panic!("{other:?}"),
        }
    }
    // Version 2 refuses nothing version 1 held, but a sealed author reads as erased to a
    // reader without its key.
    let v2 = v1.replace(
        r#""author":"Ann""#,
        r#""author":{"$personal":{"subject":"comment:1","category":"comment_author","key_id":"k","sealed":"eA=="}}"#,
    );
    match lightwidget_schemas::decode_str("CommentPosted", 2, &v2).expect("v2 decodes") {
        lightwidget_domain::DomainEvent::CommentPosted(c) => assert_eq!(c.author.name(), None),
        other => panic!("{other:?}"),
    }
}
