//! Finding, sealing and opening the personal fields of an event payload.
//!
//! The domain marks every personal field as `{"$personal": {"subject", "category", "value"}}`.
//! On append each `value` is replaced by `key_id` + `sealed` (nonce and ciphertext, base64),
//! so the event table only ever holds ciphertext. On read a field whose key still exists is
//! opened back to `value`; one whose key was shredded reads `"erased": true`.

use crate::crypto::DataKey;
use crate::StoreError;
use base64::Engine;
use lightwidget_domain::personal::PERSONAL_MARKER;
use lightwidget_domain::{Category, Subject};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

/// The (subject, category) a data key belongs to: what shredding names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    pub subject: Subject,
    pub category: Category,
}

impl KeyRef {
    pub fn new(subject: Subject, category: Category) -> Self {
        KeyRef { subject, category }
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn personal_inner(v: &Value) -> Option<&Map<String, Value>> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(PERSONAL_MARKER)?.as_object(),
        _ => None,
    }
}

/// The key that seals a field (its subject, and the category its own is keyed as).
fn key_ref(inner: &Map<String, Value>) -> Result<KeyRef, StoreError> {
    let (r, _) = field_ref(inner)?;
    Ok(r)
}

/// A field's key, and its own category (bound into the associated data: a field cannot be
/// relabelled, as from credentials to profile, without failing to open).
fn field_ref(inner: &Map<String, Value>) -> Result<(KeyRef, Category), StoreError> {
    let subject = inner
        .get("subject")
        .and_then(Value::as_str)
        .and_then(Subject::parse)
        .ok_or_else(|| {
            StoreError::InvalidPayload("a personal field without a valid subject".into())
        })?;
    let category = inner
        .get("category")
        .and_then(Value::as_str)
        .and_then(|c| c.parse::<Category>().ok())
        .ok_or_else(|| {
            StoreError::InvalidPayload("a personal field without a valid category".into())
        })?;
    Ok((
        KeyRef {
            subject,
            category: category.keyed_as(),
        },
        category,
    ))
}

/// Associated data of a sealed field: the ciphertext cannot be moved to another subject,
/// category or key.
pub fn aad(subject: &Subject, category: Category, key_id: Uuid) -> Vec<u8> {
    format!("{subject}|{category}|{key_id}").into_bytes()
}

/// Every (subject, category) whose personal data the payload holds in plaintext.
pub fn plaintext_refs(data: &Value, out: &mut BTreeSet<KeyRef>) -> Result<(), StoreError> {
    if let Some(inner) = personal_inner(data) {
        if inner.contains_key("value") {
            out.insert(key_ref(inner)?);
        }
        return Ok(());
    }
    match data {
        Value::Object(m) => m.values().try_for_each(|v| plaintext_refs(v, out)),
        Value::Array(a) => a.iter().try_for_each(|v| plaintext_refs(v, out)),
        _ => Ok(()),
    }
}

/// The stored text of a payload: every plaintext personal value replaced by its ciphertext
/// under the key of its (subject, category), written as `serde_json::to_string` writes JSON.
/// A payload that already carries ciphertext is refused: only the store seals. The text is
/// written while the payload is walked: building a sealed tree first only to serialize it
/// cost a copy of every payload (a profile of the page under load).
pub fn seal_to_string(
    data: &Value,
    keys: &HashMap<KeyRef, (Uuid, DataKey)>,
) -> Result<String, StoreError> {
    let mut out = Vec::with_capacity(256);
    seal_into(data, keys, &mut out)?;
    // serde_json writes UTF-8 only.
    String::from_utf8(out).map_err(|e| StoreError::Internal(format!("payload text: {e}")))
}

fn seal_into(
    data: &Value,
    keys: &HashMap<KeyRef, (Uuid, DataKey)>,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    if let Some(inner) = personal_inner(data) {
        return write_json(&seal_field(data, inner, keys)?, out);
    }
    match data {
        Value::Object(m) => {
            out.push(b'{');
            for (n, (k, v)) in m.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_json(k, out)?;
                out.push(b':');
                seal_into(v, keys, out)?;
            }
            out.push(b'}');
            Ok(())
        }
        Value::Array(a) => {
            out.push(b'[');
            for (n, v) in a.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                seal_into(v, keys, out)?;
            }
            out.push(b']');
            Ok(())
        }
        other => write_json(other, out),
    }
}

/// JSON text of a key or a value, as serde_json writes it.
fn write_json<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<(), StoreError> {
    serde_json::to_writer(out, v)
        .map_err(|e| StoreError::Internal(format!("serialize payload: {e}")))
}

/// One personal field (`data`, whose marker holds `inner`) sealed: its plaintext value
/// replaced by `key_id` and `sealed`; an erased field stays as it is.
fn seal_field(
    data: &Value,
    inner: &Map<String, Value>,
    keys: &HashMap<KeyRef, (Uuid, DataKey)>,
) -> Result<Value, StoreError> {
    if inner.contains_key("sealed") || inner.contains_key("key_id") {
        return Err(StoreError::InvalidPayload(
            "a personal field arrived already sealed".into(),
        ));
    }
    let Some(value) = inner.get("value") else {
        // An erased field stays erased.
        return Ok(data.clone());
    };
    let (key_ref, category) = field_ref(inner)?;
    let (key_id, key) = keys
        .get(&key_ref)
        .ok_or_else(|| StoreError::Internal("no data key prepared for a personal field".into()))?;
    let plaintext = serde_json::to_vec(value)
        .map_err(|e| StoreError::Internal(format!("serialize personal value: {e}")))?;
    let subject = key_ref.subject;
    let sealed = key.seal(&plaintext, &aad(&subject, category, *key_id));
    let mut m = Map::new();
    m.insert("subject".into(), Value::String(subject.to_string()));
    m.insert("category".into(), Value::String(category.to_string()));
    m.insert("key_id".into(), Value::String(key_id.to_string()));
    m.insert("sealed".into(), Value::String(B64.encode(sealed)));
    let mut outer = Map::new();
    outer.insert(PERSONAL_MARKER.into(), Value::Object(m));
    Ok(Value::Object(outer))
}

/// The key ids a stored payload's sealed fields need to be opened.
pub fn sealed_key_ids(data: &Value, out: &mut HashSet<Uuid>) {
    sealed_key_ids_of(data, None, out)
}

/// The key ids of the sealed fields of the given categories only (all with `None`).
pub fn sealed_key_ids_of(data: &Value, only: Option<&[Category]>, out: &mut HashSet<Uuid>) {
    if let Some(inner) = personal_inner(data) {
        let wanted = only.is_none_or(|cats| {
            inner
                .get("category")
                .and_then(Value::as_str)
                .is_some_and(|c| cats.iter().any(|w| w.as_str() == c))
        });
        if let Some(id) = inner
            .get("key_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .filter(|_| wanted)
        {
            out.insert(id);
        }
        return;
    }
    match data {
        Value::Object(m) => m.values().for_each(|v| sealed_key_ids_of(v, only, out)),
        Value::Array(a) => a.iter().for_each(|v| sealed_key_ids_of(v, only, out)),
        _ => {}
    }
}

/// The opened values of the personal fields of `subject` and `category` in a payload (erased
/// and sealed fields have none).
pub fn personal_values(data: &Value, subject: &str, category: &str, out: &mut Vec<Value>) {
    match data {
        Value::Object(map) => {
            if let Some(p) = map.get(PERSONAL_MARKER) {
                if p["subject"] == subject && p["category"] == category {
                    if let Some(v) = p.get("value") {
                        out.push(v.clone());
                    }
                }
                return;
            }
            for v in map.values() {
                personal_values(v, subject, category, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                personal_values(v, subject, category, out);
            }
        }
        _ => {}
    }
}

/// A personal field as a reader is shown it without its value: `{"sealed": {"subject",
/// "category"}}`.
fn sealed_marker(inner: &Map<String, Value>) -> Value {
    let mut m = Map::new();
    for k in ["subject", "category"] {
        m.insert(k.into(), inner.get(k).cloned().unwrap_or(Value::Null));
    }
    let mut outer = Map::new();
    outer.insert("sealed".into(), Value::Object(m));
    Value::Object(outer)
}

/// An opened payload as a person may read it: every personal field of a withheld category
/// (credentials), and the top-level `withheld` fields (credentials under an older label,
/// [`lightwidget_schemas::withheld_fields`]), read sealed; so does every other personal field
/// unless `reveal`. Erased fields stay as they are.
pub fn for_reader(data: &Value, withheld: &[&str], reveal: bool) -> Value {
    fn walk(v: &Value, reveal: bool, force: bool) -> Value {
        if let Some(inner) = personal_inner(v) {
            let erased = inner.get("erased").and_then(Value::as_bool) == Some(true);
            let withheld = inner
                .get("category")
                .and_then(Value::as_str)
                .and_then(|c| c.parse::<Category>().ok())
                .is_none_or(Category::is_withheld);
            return if erased || (reveal && !withheld && !force) {
                v.clone()
            } else {
                sealed_marker(inner)
            };
        }
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), walk(v, reveal, force)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|v| walk(v, reveal, force)).collect()),
            other => other.clone(),
        }
    }
    match data {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), walk(v, reveal, withheld.contains(&k.as_str()))))
                .collect(),
        ),
        other => walk(other, reveal, false),
    }
}

/// The payload of a recorded event as a person may read it ([`for_reader`]).
pub fn event_for_reader(event: &crate::RecordedEvent, reveal: bool) -> Value {
    let withheld = lightwidget_schemas::withheld_fields(&event.event_type, event.schema_version);
    for_reader(&event.data, withheld, reveal)
}

/// Opens every sealed field whose key is in `keys`; every other sealed field becomes
/// `"erased": true`. Never fails: a field that cannot be opened is, for every reader, erased.
pub fn open(data: &Value, keys: &HashMap<Uuid, DataKey>) -> Value {
    if let Some(inner) = personal_inner(data) {
        let subject = inner.get("subject").cloned().unwrap_or(Value::Null);
        let category = inner.get("category").cloned().unwrap_or(Value::Null);
        let opened = (|| {
            let key_id: Uuid = inner.get("key_id")?.as_str()?.parse().ok()?;
            let key = keys.get(&key_id)?;
            let sealed = B64.decode(inner.get("sealed")?.as_str()?).ok()?;
            let (r, category) = field_ref(inner).ok()?;
            let plain = key.open(&sealed, &aad(&r.subject, category, key_id))?;
            serde_json::from_slice::<Value>(&plain).ok()
        })();
        let mut m = Map::new();
        m.insert("subject".into(), subject);
        m.insert("category".into(), category);
        match opened {
            Some(v) => m.insert("value".into(), v),
            None if inner.contains_key("value") => m.insert(
                "value".into(),
                inner.get("value").cloned().unwrap_or(Value::Null),
            ),
            None => m.insert("erased".into(), Value::Bool(true)),
        };
        let mut outer = Map::new();
        outer.insert(PERSONAL_MARKER.into(), Value::Object(m));
        return Value::Object(outer);
    }
    match data {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), open(v, keys))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| open(v, keys)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload() -> Value {
        json!({
            "account_id": "a1",
            "profile": {"$personal": {"subject": "account:a1", "category": "profile", "value": {"username": "MARKER-alice"}}},
            "list": [{"$personal": {"subject": "order:o1", "category": "billing", "value": "MARKER-bob"}}]
        })
    }

    #[test]
    fn seals_opens_and_erases() {
        let data = payload();
        let mut refs = BTreeSet::new();
        plaintext_refs(&data, &mut refs).expect("refs");
        assert_eq!(refs.len(), 2);
        let keys: HashMap<KeyRef, (Uuid, DataKey)> = refs
            .into_iter()
            .map(|r| (r, (Uuid::new_v4(), DataKey::generate())))
            .collect();
        let sealed: Value =
            serde_json::from_str(&seal_to_string(&data, &keys).expect("seal")).expect("json");
        let text = sealed.to_string();
        assert!(!text.contains("MARKER"), "{text}");

        let mut ids = HashSet::new();
        sealed_key_ids(&sealed, &mut ids);
        assert_eq!(ids.len(), 2);

        let by_id: HashMap<Uuid, DataKey> = keys.values().map(|(id, k)| (*id, k.clone())).collect();
        assert_eq!(open(&sealed, &by_id), data);

        // Shred the billing key only: that field reads erased, the profile stays.
        let billing_id =
            keys[&crate::KeyRef::new(Subject::new("order", "o1"), Category::Billing)].0;
        let fewer: HashMap<Uuid, DataKey> = by_id
            .into_iter()
            .filter(|(id, _)| *id != billing_id)
            .collect();
        let opened = open(&sealed, &fewer);
        assert_eq!(opened["profile"], data["profile"]);
        assert_eq!(
            opened["list"][0],
            json!({"$personal": {"subject": "order:o1", "category": "billing", "erased": true}})
        );
    }

    /// The text written while sealing is canonical JSON (a parse and a fresh `to_string`
    /// give it back byte for byte), the payload's tree with each plaintext field replaced by
    /// its key id and ciphertext, and it opens back to the payload.
    #[test]
    fn sealed_text_is_the_sealed_tree_as_text() {
        let mut data = payload();
        data["nested"] =
            json!({"z": [1, 2.5, null, true, "tab\tand \"quote\" é"], "a": {}, "m": []});
        data["erased"] =
            json!({"$personal": {"subject": "account:a1", "category": "profile", "erased": true}});
        let mut refs = BTreeSet::new();
        plaintext_refs(&data, &mut refs).expect("refs");
        let keys: HashMap<KeyRef, (Uuid, DataKey)> = refs
            .into_iter()
            .map(|r| (r, (Uuid::new_v4(), DataKey::generate())))
            .collect();
        let text = seal_to_string(&data, &keys).expect("seal");
        assert!(!text.contains("MARKER"), "{text}");
        let parsed: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(serde_json::to_string(&parsed).expect("text"), text);
        // The payload's tree, but for each plaintext field: subject, category, key id and
        // ciphertext in its place (each seal draws a nonce, so the ciphertext is not compared).
        fn each_field(v: &Value, f: &dyn Fn(&mut Map<String, Value>)) -> Value {
            if let Some(inner) = personal_inner(v) {
                let mut m = inner.clone();
                f(&mut m);
                let mut outer = Map::new();
                outer.insert(PERSONAL_MARKER.into(), Value::Object(m));
                return Value::Object(outer);
            }
            match v {
                Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| (k.clone(), each_field(v, f)))
                    .collect(),
                Value::Array(a) => a.iter().map(|v| each_field(v, f)).collect(),
                other => other.clone(),
            }
        }
        let stored = each_field(&parsed, &|m| {
            for k in ["key_id", "sealed"] {
                if m.get(k).is_some_and(Value::is_string) {
                    m.insert(k.into(), Value::Bool(true));
                }
            }
        });
        let expected = each_field(&data, &|m| {
            if m.remove("value").is_some() {
                m.insert("key_id".into(), Value::Bool(true));
                m.insert("sealed".into(), Value::Bool(true));
            }
        });
        assert_eq!(stored, expected);
        let by_id: HashMap<Uuid, DataKey> = keys.values().map(|(id, k)| (*id, k.clone())).collect();
        assert_eq!(open(&parsed, &by_id), data);
        // A field already sealed, deep inside, is refused.
        let pre = json!({"x": [{"$personal": {"subject": "a:1", "category": "profile", "key_id": "x", "sealed": "y"}}]});
        assert!(matches!(
            seal_to_string(&pre, &HashMap::new()),
            Err(StoreError::InvalidPayload(_))
        ));
    }

    #[test]
    fn refuses_pre_sealed_and_malformed_fields() {
        let pre = json!({"$personal": {"subject": "a:1", "category": "profile", "key_id": "x", "sealed": "y"}});
        assert!(matches!(
            seal_to_string(&pre, &HashMap::new()),
            Err(StoreError::InvalidPayload(_))
        ));
        let bad = json!({"$personal": {"subject": "nocolon", "category": "profile", "value": 1}});
        assert!(matches!(
            plaintext_refs(&bad, &mut BTreeSet::new()),
            Err(StoreError::InvalidPayload(_))
        ));
    }

    #[test]
    fn readers_see_personal_fields_sealed_unless_revealed_and_credentials_never() {
        let data = json!({
            "account_id": "a1",
            "profile": {"$personal": {"subject": "account:a1", "category": "profile", "value": {"username": "MARKER-alice"}}},
            "access_token": {"$personal": {"subject": "account:a1", "category": "credentials", "value": "MARKER-token"}},
            "old": {"$personal": {"subject": "account:a1", "category": "profile", "value": "MARKER-old-token"}},
            "gone": {"$personal": {"subject": "order:o1", "category": "billing", "erased": true}}
        });
        let sealed = for_reader(&data, &["old"], false);
        assert!(!sealed.to_string().contains("MARKER"), "{sealed}");
        assert_eq!(
            sealed["profile"],
            json!({"sealed": {"subject": "account:a1", "category": "profile"}})
        );
        assert_eq!(sealed["gone"], data["gone"], "erased stays erased");
        assert_eq!(sealed["account_id"], "a1");
        let revealed = for_reader(&data, &["old"], true);
        assert_eq!(revealed["profile"], data["profile"]);
        assert_eq!(
            revealed["access_token"],
            json!({"sealed": {"subject": "account:a1", "category": "credentials"}})
        );
        assert!(revealed["old"]["sealed"].is_object(), "{revealed}");
        let text = revealed.to_string();
        assert!(text.contains("MARKER-alice"), "{text}");
        assert!(!text.contains("MARKER-token") && !text.contains("MARKER-old-token"));
    }
}
