//! Which group and stream each event goes to: the templates rendered per container (cached),
//! or per event when they read the event's fields, behind a cardinality guard: one odd field
//! value must not create thousands of groups or streams (each a billed, retained resource),
//! so names beyond `max_log_groups` / `max_log_streams` fall back to the template rendered
//! with every field at its default and the default container, and are counted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::config::CloudWatchLogsConfig;
use super::service::Destination;
use super::template::{Context, NameKind, Template};
use crate::metrics::Metrics;
use crate::pipeline::ecs::{SharedTaskInfo, TaskInfo};
use crate::pipeline::event::Event;
use crate::pipeline::fields::Fields;

/// Rendered destinations cached per container at most (re-rendered on demand).
const MAX_CACHED: usize = 256;

/// Routes events to destinations.
#[derive(Debug)]
pub struct Router {
    group: Template,
    stream: Template,
    default_container: String,
    hostname: String,
    max_groups: usize,
    max_streams: usize,
    metrics: Arc<Metrics>,
    info: Option<Arc<TaskInfo>>,
    /// Destinations by container, when the templates read no field.
    by_container: HashMap<Arc<str>, Destination>,
    /// The destination of events without a container, likewise.
    default: Option<Destination>,
    /// Every group name handed out since start (the guard's memory; at most
    /// `max_groups` + fallbacks).
    groups: HashSet<Arc<str>>,
    /// Every destination handed out since start, likewise.
    streams: HashSet<Destination>,
}

impl Router {
    /// A router for `config`'s templates (validated: a bad one falls back to the text).
    pub fn new(config: &CloudWatchLogsConfig, hostname: String, metrics: Arc<Metrics>) -> Self {
        let parse = |text: &str, kind| {
            Template::parse(text, kind)
                .or_else(|_| Template::parse("unknown", kind))
                .expect("a literal is a template")
        };
        Self {
            group: parse(&config.log_group, NameKind::Group),
            stream: parse(&config.log_stream, NameKind::Stream),
            default_container: config.default_container.clone(),
            hostname,
            max_groups: config.max_log_groups,
            max_streams: config.max_log_streams,
            metrics,
            info: None,
            by_container: HashMap::new(),
            default: None,
            groups: HashSet::new(),
            streams: HashSet::new(),
        }
    }

    /// The group to set up at start: only a plain name is known before any event.
    pub fn fixed_group(&self) -> Option<&str> {
        self.group.literal()
    }

    /// Forgets cached names when the task metadata changed (checked once per batch).
    pub fn refresh(&mut self, shared: &SharedTaskInfo) {
        let info = shared.get();
        let same = match (&info, &self.info) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.info = info;
            self.forget_cached();
        }
    }

    /// Forgets the per-container cache when it grew large.
    pub fn prune(&mut self) {
        if self.by_container.len() > MAX_CACHED {
            self.forget_cached();
        }
    }

    fn forget_cached(&mut self) {
        self.default = None;
        self.by_container.clear();
    }

    /// Where `event` goes.
    pub fn route(&mut self, event: &Event) -> Destination {
        let container = event.container.as_deref();
        if self.group.reads_fields() || self.stream.reads_fields() {
            let fields = Fields::of(&event.message);
            return self.render(container, Some(&fields));
        }
        let cached = match container {
            Some(container) => self.by_container.get(container),
            None => self.default.as_ref(),
        };
        if let Some(to) = cached {
            return to.clone();
        }
        let to = self.render(container, None);
        match container {
            Some(container) => {
                self.by_container.insert(container.into(), to.clone());
            }
            None => self.default = Some(to.clone()),
        }
        to
    }

    fn fallback_container(&self) -> &str {
        self.info
            .as_ref()
            .map(|i| i.app_container.as_str())
            .filter(|c| !c.is_empty())
            .unwrap_or(&self.default_container)
    }

    /// The group and stream names for an event of `container` with `fields`; `None` for
    /// both renders the fallback (default container, every field at its default).
    fn names(&self, container: Option<&str>, fields: Option<&Fields<'_>>) -> (String, String) {
        let context = Context {
            info: self.info.as_deref(),
            container: container.unwrap_or_else(|| self.fallback_container()),
            hostname: &self.hostname,
        };
        (
            self.group.render(&context, fields),
            self.stream.render(&context, fields),
        )
    }

    fn render(&mut self, container: Option<&str>, fields: Option<&Fields<'_>>) -> Destination {
        let (mut group, mut stream) = self.names(container, fields);
        if !self.groups.contains(group.as_str()) && self.groups.len() >= self.max_groups {
            (group, stream) = self.names(None, None);
            self.metrics.rerouted(1);
        }
        let group = self.intern(group);
        let mut to = Destination {
            group,
            stream: stream.into(),
        };
        if !self.streams.contains(&to) && self.streams.len() >= self.max_streams {
            to.stream = self.names(None, None).1.into();
            self.metrics.rerouted(1);
        }
        if let Some(known) = self.streams.get(&to) {
            return known.clone();
        }
        self.streams.insert(to.clone());
        to
    }

    fn intern(&mut self, group: String) -> Arc<str> {
        if let Some(known) = self.groups.get(group.as_str()) {
            return known.clone();
        }
        let group: Arc<str> = group.into();
        self.groups.insert(group.clone());
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(extra: &str) -> Router {
        let config: CloudWatchLogsConfig = toml::from_str(extra).unwrap();
        Router::new(&config, "host-1".into(), Arc::new(Metrics::new()))
    }

    fn event(container: Option<&str>, message: &str) -> Event {
        Event {
            time_ms: 0,
            message: message.into(),
            level: None,
            container: container.map(Arc::from),
            request_id: None,
            ack: None,
        }
    }

    fn names(to: &Destination) -> (&str, &str) {
        (&to.group, &to.stream)
    }

    #[test]
    fn names_per_container_follow_the_task_metadata() {
        let mut router = router("log_group = \"g\"");
        let shared = SharedTaskInfo::default();
        router.refresh(&shared);
        assert_eq!(router.fixed_group(), Some("g"));
        assert_eq!(names(&router.route(&event(None, "x"))), ("g", "app/host-1"));
        assert_eq!(
            names(&router.route(&event(Some("api"), "x"))).1,
            "api/host-1"
        );
        shared.set(TaskInfo {
            task_id: "abc123".into(),
            app_container: "web".into(),
            ..TaskInfo::default()
        });
        assert_eq!(
            names(&router.route(&event(Some("api"), "x"))).1,
            "api/host-1",
            "cached"
        );
        router.refresh(&shared);
        assert_eq!(
            names(&router.route(&event(Some("api"), "x"))).1,
            "api/abc123"
        );
        assert_eq!(
            names(&router.route(&event(None, "x"))).1,
            "web/abc123",
            "the app container is the default"
        );
    }

    #[test]
    fn fields_pick_the_group_and_the_guard_caps_new_names() {
        let mut router = router(
            "log_group = \"/ecs/{field.service|shared}\"\nlog_stream = \"{field.user|anon}\"\nmax_log_groups = 3\nmax_log_streams = 5",
        );
        assert_eq!(router.fixed_group(), None);
        let to = router.route(&event(None, r#"{"service":"billing","user":"u1"}"#));
        assert_eq!(names(&to), ("/ecs/billing", "u1"));
        let to = router.route(&event(None, "plain text"));
        assert_eq!(names(&to), ("/ecs/shared", "anon"));
        for i in 0..100 {
            let line = format!(r#"{{"service":"svc{i}","user":"u{i}"}}"#);
            router.route(&event(None, &line));
        }
        assert!(
            router.groups.len() <= 4,
            "cap + the fallback: {:?}",
            router.groups
        );
        assert!(router.streams.len() <= 6, "{:?}", router.streams);
        let again = router.route(&event(None, r#"{"service":"billing","user":"u1"}"#));
        assert_eq!(names(&again), ("/ecs/billing", "u1"), "known names stay");
        let late = router.route(&event(None, r#"{"service":"new","user":"new"}"#));
        assert_eq!(names(&late), ("/ecs/shared", "anon"), "new names fall back");
        assert!(router.metrics.rerouted_events() >= 97);
    }

    #[test]
    fn invented_containers_cannot_grow_streams_without_bound() {
        let mut router = router("log_group = \"g\"\nmax_log_streams = 10");
        for i in 0..1000 {
            router.route(&event(Some(&format!("c{i}")), "x"));
            router.prune();
        }
        assert!(router.streams.len() <= 11, "{}", router.streams.len());
        assert!(router.by_container.len() <= MAX_CACHED + 1);
    }
}
