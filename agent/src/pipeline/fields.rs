//! Reading named fields out of a JSON event, for the features that ask for them by name
//! (filters on a field, log group and stream names templated over fields). Only those
//! features pay for it: the hot path's single parse (`parse.rs`) does not collect fields.
//!
//! A path is dotted: `http.route` is the `route` key of the object under `http`. Values are
//! borrowed from the line unless they hold escapes.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;

/// A field path, split once at configuration time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Box<[Box<str>]>);

impl FieldPath {
    /// `text` split on `.`; `None` when empty or with an empty segment.
    pub fn parse(text: &str) -> Option<Self> {
        let parts: Vec<Box<str>> = text.split('.').map(Box::from).collect();
        (!parts.iter().any(|p| p.is_empty())).then(|| Self(parts.into()))
    }
}

/// The top-level object of one line, parsed once so that several paths can be read.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    top: HashMap<Cow<'a, str>, &'a RawValue>,
}

impl<'a> Fields<'a> {
    /// The object `line` holds; empty when it is not a JSON object (then every lookup is
    /// `None`).
    pub fn of(line: &'a str) -> Self {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('{') {
            return Self::default();
        }
        Self {
            top: serde_json::from_str(trimmed).unwrap_or_default(),
        }
    }

    /// The value at `path` as text: a string's contents, a number's or a boolean's JSON
    /// text; `None` when absent, null, an object or an array.
    pub fn get(&self, path: &FieldPath) -> Option<Cow<'a, str>> {
        let (first, rest) = path.0.split_first()?;
        let mut value: &'a RawValue = self.top.get(&**first)?;
        for key in rest {
            let object: HashMap<Cow<'a, str>, &'a RawValue> =
                serde_json::from_str(value.get()).ok()?;
            value = object.get(&**key)?;
        }
        scalar(value.get())
    }
}

fn scalar(json: &str) -> Option<Cow<'_, str>> {
    match json.as_bytes().first()? {
        b'"' => serde_json::from_str::<Cow<'_, str>>(json).ok(),
        b'{' | b'[' | b'n' => None,
        _ => Some(Cow::Borrowed(json)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(line: &str, path: &str) -> Option<String> {
        Fields::of(line)
            .get(&FieldPath::parse(path).unwrap())
            .map(Cow::into_owned)
    }

    #[test]
    fn reads_scalars_at_dotted_paths() {
        let line = r#"{"service":"billing","n":42,"ok":true,"http":{"route":"/a\"b","x":{"y":"deep"}},"nil":null,"list":[1],"obj":{}}"#;
        assert_eq!(get(line, "service").as_deref(), Some("billing"));
        assert_eq!(get(line, "n").as_deref(), Some("42"));
        assert_eq!(get(line, "ok").as_deref(), Some("true"));
        assert_eq!(get(line, "http.route").as_deref(), Some("/a\"b"));
        assert_eq!(get(line, "http.x.y").as_deref(), Some("deep"));
        for absent in ["nil", "list", "obj", "missing", "http.missing", "service.x"] {
            assert_eq!(get(line, absent), None, "{absent}");
        }
    }

    #[test]
    fn anything_but_an_object_has_no_fields() {
        for line in ["plain text", "[1,2]", "{\"a\":", "", "  {\"a\":1} trailing"] {
            assert_eq!(get(line, "a"), None, "{line}");
        }
        assert_eq!(get("  {\"a\":1}", "a").as_deref(), Some("1"));
    }

    #[test]
    fn paths_need_every_segment() {
        assert!(FieldPath::parse("a.b").is_some());
        for bad in ["", ".a", "a.", "a..b"] {
            assert!(FieldPath::parse(bad).is_none(), "{bad}");
        }
    }
}
