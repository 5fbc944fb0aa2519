//! Log group and stream names as templates over the task's ECS metadata and the event's own
//! fields: `/ecs/{family}/{field.service|shared}` renders `/ecs/api:42/billing`, or
//! `/ecs/api:42/shared` for an event without a `service` field.
//!
//! Placeholders: `{container}`, `{task_id}`, `{cluster}`, `{family}` (family:revision),
//! `{az}`, `{hostname}`, and `{field.PATH}` or `{field.PATH|DEFAULT}` (a dotted JSON path;
//! a missing, empty, null or non-scalar value renders the default, `unknown` when none is
//! given, as does missing metadata). Rendered names obey CloudWatch's rules: characters a
//! group name cannot hold become `_` (streams: `:` and `*`), at most 512 bytes.

use crate::pipeline::ecs::TaskInfo;
use crate::pipeline::fields::{FieldPath, Fields};

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    kind: NameKind,
}

/// Which of CloudWatch's naming rules a rendered name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// `[A-Za-z0-9_\-/.#]`, 1-512.
    Group,
    /// Anything but `:` and `*`, 1-512.
    Stream,
}

impl NameKind {
    /// Whether a name of this kind may hold `c` (validation and rendering share the rule).
    pub fn allows(self, c: char) -> bool {
        match self {
            Self::Group => c.is_ascii_alphanumeric() || "_-/.#".contains(c),
            Self::Stream => c != ':' && c != '*',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Meta(Meta),
    Field { path: FieldPath, default: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    Container,
    TaskId,
    Cluster,
    Family,
    Az,
    Hostname,
}

/// What a name is rendered from, besides the event's fields.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The task's metadata, once known.
    pub info: Option<&'a TaskInfo>,
    /// The container that wrote the event (or the default one).
    pub container: &'a str,
    /// This host's name (the task id before the metadata is known).
    pub hostname: &'a str,
}

/// Longest name CloudWatch accepts.
const MAX_NAME_BYTES: usize = 512;

/// Rendered in place of a value that is missing.
const UNKNOWN: &str = "unknown";

impl Template {
    /// Parses `text`; the error names the first placeholder it does not know.
    pub fn parse(text: &str, kind: NameKind) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| format!("unclosed `{{` in {text:?}"))?;
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            parts.push(Part::placeholder(&rest[open + 1..close])?);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Self { parts, kind })
    }

    /// Whether it reads the event's fields (then every event is rendered on its own).
    pub fn reads_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field { .. }))
    }

    /// Whether every event gets the same name (no field, no container).
    pub fn is_per_task(&self) -> bool {
        self.parts
            .iter()
            .all(|p| !matches!(p, Part::Field { .. } | Part::Meta(Meta::Container)))
    }

    /// Whether it is plain text, the same from the first moment (no placeholder at all).
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// The literal text between placeholders (validation checks its characters).
    pub fn text_parts(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Text(text) => Some(text.as_str()),
            _ => None,
        })
    }

    /// The name for an event with `fields`; `None` fields render every field's default
    /// (the fallback name the cardinality guard uses).
    pub fn render(&self, context: &Context<'_>, fields: Option<&Fields<'_>>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Meta(meta) => out.push_str(nonempty(meta.value(context))),
                Part::Field { path, default } => {
                    match fields.and_then(|f| f.get(path)).filter(|v| !v.is_empty()) {
                        Some(value) => out.push_str(&value),
                        None => out.push_str(default),
                    }
                }
            }
        }
        self.clean(out)
    }

    fn clean(&self, name: String) -> String {
        let mut name: String = name
            .chars()
            .map(|c| if self.kind.allows(c) { c } else { '_' })
            .collect();
        if name.is_empty() {
            name.push_str(UNKNOWN);
        }
        let mut cut = name.len().min(MAX_NAME_BYTES);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name
    }
}

impl Part {
    fn placeholder(inner: &str) -> Result<Self, String> {
        let meta = match inner {
            "container" => Meta::Container,
            "task_id" => Meta::TaskId,
            "cluster" => Meta::Cluster,
            "family" => Meta::Family,
            "az" => Meta::Az,
            "hostname" => Meta::Hostname,
            _ => return Self::field(inner),
        };
        Ok(Self::Meta(meta))
    }

    fn field(inner: &str) -> Result<Self, String> {
        let unknown = || {
            format!(
                "unknown placeholder {{{inner}}} (container, task_id, cluster, family, az, hostname, field.PATH, field.PATH|DEFAULT)"
            )
        };
        let spec = inner.strip_prefix("field.").ok_or_else(unknown)?;
        let (path, default) = spec.split_once('|').unwrap_or((spec, UNKNOWN));
        let path = FieldPath::parse(path).ok_or_else(unknown)?;
        Ok(Self::Field {
            path,
            default: default.to_owned(),
        })
    }
}

impl Meta {
    fn value<'a>(self, context: &Context<'a>) -> &'a str {
        let info = context.info;
        match self {
            Self::Container => context.container,
            Self::TaskId => info.map_or(context.hostname, |i| i.task_id.as_str()),
            Self::Cluster => info.map_or("", |i| i.cluster.as_str()),
            Self::Family => info.map_or("", |i| i.family_revision.as_str()),
            Self::Az => info.map_or("", |i| i.availability_zone.as_str()),
            Self::Hostname => context.hostname,
        }
    }
}

fn nonempty(value: &str) -> &str {
    if value.is_empty() { UNKNOWN } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TaskInfo {
        TaskInfo {
            cluster: "prod".into(),
            task_id: "0123abcd".into(),
            family_revision: "api:42".into(),
            availability_zone: "us-east-1b".into(),
            app_container: "api".into(),
        }
    }

    fn render(template: &str, kind: NameKind, info: Option<&TaskInfo>, line: &str) -> String {
        let context = Context {
            info,
            container: "api",
            hostname: "host-1",
        };
        let fields = Fields::of(line);
        Template::parse(template, kind)
            .unwrap()
            .render(&context, Some(&fields))
    }

    #[test]
    fn metadata_placeholders_render_and_missing_ones_say_unknown() {
        let info = info();
        let stream = NameKind::Stream;
        assert_eq!(
            render("{container}/{task_id}", stream, Some(&info), ""),
            "api/0123abcd"
        );
        assert_eq!(
            render("{family}/{az}", stream, Some(&info), ""),
            "api_42/us-east-1b"
        );
        assert_eq!(
            render("{container}/{task_id}", stream, None, ""),
            "api/host-1",
            "the hostname stands for the task id until the metadata is known"
        );
        assert_eq!(render("{cluster}", stream, None, ""), "unknown");
        assert_eq!(render(&"x".repeat(600), stream, None, "").len(), 512);
        assert_eq!(render("a*b", stream, None, ""), "a_b");
    }

    #[test]
    fn fields_render_with_their_default_and_group_names_are_cleaned() {
        let group = NameKind::Group;
        let line = r#"{"service":"billing","team":{"name":"pay ments"},"n":7}"#;
        let info = info();
        assert_eq!(
            render("/ecs/{cluster}/{field.service}", group, Some(&info), line),
            "/ecs/prod/billing"
        );
        assert_eq!(
            render("/ecs/{field.team.name}/{field.n}", group, None, line),
            "/ecs/pay_ments/7",
            "a space is not allowed in a group name"
        );
        assert_eq!(
            render("/ecs/{field.missing|shared}", group, None, line),
            "/ecs/shared"
        );
        assert_eq!(
            render("/ecs/{field.missing}", group, None, "not json"),
            "/ecs/unknown"
        );
        assert_eq!(
            render("/ecs/{family}", group, Some(&info), ""),
            "/ecs/api_42",
            "`:` is not allowed in a group name"
        );
    }

    #[test]
    fn the_fallback_renders_every_field_at_its_default() {
        let template = Template::parse("/ecs/{field.service|other}", NameKind::Group).unwrap();
        let context = Context {
            info: None,
            container: "c",
            hostname: "h",
        };
        assert_eq!(template.render(&context, None), "/ecs/other");
    }

    #[test]
    fn parsing_names_what_it_does_not_know() {
        let kind = NameKind::Stream;
        assert!(
            Template::parse("{container}/{nope}", kind)
                .unwrap_err()
                .contains("{nope}")
        );
        assert!(
            Template::parse("{field.}", kind)
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(
            Template::parse("a{container", kind)
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(Template::parse("", kind).is_err());
        let template = Template::parse("/ecs/{family}/{field.svc|x}", kind).unwrap();
        assert!(template.reads_fields());
        assert!(!template.is_per_task());
        assert_eq!(template.text_parts().collect::<Vec<_>>(), ["/ecs/", "/"]);
        let fixed = Template::parse("/ecs/{family}", kind).unwrap();
        assert!(fixed.is_per_task() && !fixed.reads_fields() && fixed.literal().is_none());
        assert_eq!(
            Template::parse("/ecs/api", kind).unwrap().literal(),
            Some("/ecs/api")
        );
    }
}
