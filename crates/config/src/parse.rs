//! YAML text → `Config`, collecting *every* problem instead of stopping at the first.
//!
//! serde stops at the first bad value, but an operator fixing a config wants the whole list.
//! So each leaf value is first deserialized on its own (inside an otherwise empty document,
//! which is valid because every key has a default); the leaves that fail are reported with
//! their key paths and removed, and what is left is deserialized once more through
//! `serde_ignored` to list the unknown keys. The schema itself (`schema.rs`) is the only
//! source of key names: the names offered as suggestions are read from the serde derive.

use std::cell::Cell;

use serde::de::{self, Deserialize, Visitor};
use serde_yaml_ng::{Mapping, Value};

use crate::problem::Problem;
use crate::schema::*;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// The outcome of parsing: a config when one could be built (possibly from a repaired
/// document, for semantic checks), the problems found, and the key paths already reported
/// (semantic checks under those paths would only repeat them).
pub(crate) struct Parsed {
    pub config: Option<Config>,
    pub problems: Vec<Problem>,
    pub bad_paths: Vec<String>,
}

pub(crate) fn parse(text: &str) -> Parsed {
    let fail = |msg: String| Parsed {
        config: None,
        problems: vec![Problem::new("", msg)],
        bad_paths: Vec::new(),
    };
    let mut doc: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => return fail(format!("not valid YAML: {e}")),
    };
    if let Err(e) = doc.apply_merge() {
        return fail(format!("YAML merge keys (<<) could not be applied: {e}"));
    }
    if doc.is_null() {
        doc = Value::Mapping(Mapping::new());
    }
    if !doc.is_mapping() {
        return fail(
            "the file must be a mapping of sections (server:, story:, failover:, ...)".into(),
        );
    }
    drop_empty_values(&mut doc);

    let mut problems = Vec::new();
    let mut bad_paths = Vec::new();

    // 1. Each leaf alone: type errors, with their paths.
    let mut leaves = Vec::new();
    collect_leaves(&doc, &mut Vec::new(), &mut leaves);
    for (path, leaf) in leaves {
        let probe = rebuild(&path, leaf);
        if let Err(err) = serde_path_to_error::deserialize::<_, Config>(probe) {
            let depth = err.path().iter().count().clamp(1, path.len().max(1));
            let at = &path[..depth.min(path.len())];
            let shown = display_path(at);
            if bad_paths.contains(&shown) {
                continue;
            }
            problems.push(Problem::new(
                shown.clone(),
                friendly(&err.inner().to_string()),
            ));
            bad_paths.push(shown);
            repair(&mut doc, at);
        }
    }

    // 2. The repaired whole: unknown keys.
    let mut unknown = Vec::new();
    let config = match serde_ignored::deserialize(doc, |p| unknown.push(ignored_path(&p))) {
        Ok(config) => Some(config),
        Err(e) => {
            problems.push(Problem::new("", friendly(&e.to_string())));
            None
        }
    };
    for path in unknown {
        let shown = display_path(&path);
        problems.push(Problem::new(shown.clone(), unknown_key_message(&path)));
        bad_paths.push(shown);
    }
    Parsed {
        config,
        problems,
        bad_paths,
    }
}

/// `key:` with no value means "the default", as operators expect from commented-out YAML.
fn drop_empty_values(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            m.retain(|_, child| !child.is_null());
            for (_, child) in m.iter_mut() {
                drop_empty_values(child);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(drop_empty_values),
        _ => {}
    }
}

fn collect_leaves(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, Value)>) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(Seg::Key(key_text(k)));
                collect_leaves(child, path, out);
                path.pop();
            }
        }
        Value::Sequence(s) if !s.is_empty() => {
            for (i, child) in s.iter().enumerate() {
                path.push(Seg::Index(i));
                collect_leaves(child, path, out);
                path.pop();
            }
        }
        _ => out.push((path.clone(), v.clone())),
    }
}

/// A document holding only `leaf` at `path` (sequence indices collapse to a one-element list).
fn rebuild(path: &[Seg], leaf: Value) -> Value {
    path.iter().rev().fold(leaf, |inner, seg| match seg {
        Seg::Key(k) => {
            let mut m = Mapping::new();
            m.insert(Value::String(k.clone()), inner);
            Value::Mapping(m)
        }
        Seg::Index(_) => Value::Sequence(vec![inner]),
    })
}

/// Takes a reported bad value out of the document so the rest can still be checked.
/// A list element is replaced rather than removed, so later indices keep their meaning.
fn repair(doc: &mut Value, path: &[Seg]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut parent = &mut *doc;
    for seg in parent_path {
        let next = match (seg, parent) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
            (Seg::Index(i), Value::Sequence(s)) => s.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => parent = n,
            None => return,
        }
    }
    match (last, parent) {
        (Seg::Key(k), Value::Mapping(m)) => {
            m.remove(k.as_str());
        }
        (Seg::Index(i), Value::Sequence(s)) => {
            let element_path: Vec<Seg> = path.to_vec();
            let replacement = [Value::Mapping(Mapping::new()), Value::String(String::new())]
                .into_iter()
                .find(|candidate| {
                    serde_path_to_error::deserialize::<_, Config>(rebuild(
                        &element_path,
                        candidate.clone(),
                    ))
                    .is_ok()
                });
            if let (Some(slot), Some(value)) = (s.get_mut(*i), replacement) {
                *slot = value;
            }
        }
        _ => {}
    }
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    match p {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut v = ignored_path(parent);
            v.push(Seg::Index(*index));
            v
        }
        Path::Map { parent, key } => {
            let mut v = ignored_path(parent);
            v.push(Seg::Key(key.clone()));
            v
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// Makes serde's type errors read like advice about YAML rather than about Rust types.
fn friendly(msg: &str) -> String {
    let replaced = msg
        .replace("expected u16", "expected a port number (1-65535)")
        .replace("expected u32", "expected a whole number (0 or more)")
        .replace("expected u64", "expected a whole number (0 or more)")
        .replace("expected f64", "expected a number")
        .replace("expected a boolean", "expected true or false")
        .replace("expected a string", "expected text")
        .replace("unit value", "nothing");
    // serde names our Rust types ("struct ServerConfig"); the operator knows sections.
    match replaced.find("expected struct ") {
        Some(i) => format!("{}expected a section of keys", &replaced[..i]),
        None => replaced,
    }
}

fn unknown_key_message(path: &[Seg]) -> String {
    let Some(Seg::Key(name)) = path.last() else {
        return "unexpected value".into();
    };
    let parent = &path[..path.len() - 1];
    let here = fields_at(parent);
    if let Some(best) = here
        .iter()
        .copied()
        .max_by(|a, b| strsim::jaro_winkler(name, a).total_cmp(&strsim::jaro_winkler(name, b)))
    {
        if strsim::jaro_winkler(name, best) >= 0.85 {
            return format!("unknown key; did you mean `{best}`?");
        }
    }
    // A known key in the wrong section is a common slip (e.g. min_peers under failover).
    for section in fields_at(&[]) {
        if fields_at(&[Seg::Key((*section).to_string())]).contains(&name.as_str()) {
            return format!("unknown key here; `{name}` belongs in the `{section}` section");
        }
    }
    if here.is_empty() {
        "unknown key".into()
    } else {
        format!("unknown key (known keys here: {})", here.join(", "))
    }
}

/// The key names the schema accepts at a path (list indices ignored).
fn fields_at(path: &[Seg]) -> &'static [&'static str] {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    match keys.as_slice() {
        [] => fields_of::<Config>(),
        ["server"] => fields_of::<ServerConfig>(),
        ["story"] => fields_of::<StoryConfig>(),
        ["failover"] => fields_of::<FailoverConfig>(),
        ["health"] => fields_of::<HealthConfig>(),
        ["communication"] => fields_of::<CommunicationConfig>(),
        ["communication", "peers"] => fields_of::<PeerConfig>(),
        ["communication", "tls"] | ["coordination", "etcd", "tls"] => fields_of::<TlsConfig>(),
        ["coordination"] => fields_of::<CoordinationConfig>(),
        ["coordination", "etcd"] => fields_of::<EtcdConfig>(),
        ["alerts"] => fields_of::<AlertsConfig>(),
        ["alerts", "telegram"] => fields_of::<TelegramConfig>(),
        ["alerts", "pagerduty"] => fields_of::<PagerDutyConfig>(),
        ["logging"] => fields_of::<LoggingConfig>(),
        _ => &[],
    }
}

/// Reads the field names a serde-derived struct declares, by asking it to deserialize from
/// a deserializer that records them and then gives up.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Capture<'a>(&'a Cell<&'static [&'static str]>);
    impl<'de> de::Deserializer<'de> for Capture<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(de::Error::custom("fields captured"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let cell = Cell::new(&[][..]);
    let _ = T::deserialize(Capture(&cell));
    cell.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_the_schema() {
        assert!(fields_of::<FailoverConfig>().contains(&"retry_attempts"));
        assert!(fields_of::<Config>().contains(&"communication"));
    }

    #[test]
    fn paths_display_like_yaml_keys() {
        let p = [
            Seg::Key("communication".into()),
            Seg::Key("peers".into()),
            Seg::Index(1),
            Seg::Key("address".into()),
        ];
        assert_eq!(display_path(&p), "communication.peers[1].address");
    }
}
