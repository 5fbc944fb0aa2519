//! A dashboard body read for drawing: each widget's place on the grid and what it shows.
//! Lenient on purpose: `plan --preview` draws the body CloudWatch holds, which no file
//! validated, so anything unknown is drawn as a box that says what it is.

use serde_json::{Map, Value};

use super::super::validate::resolve_row;

/// Columns of the dashboard grid.
pub(crate) const GRID_COLUMNS: i64 = 24;

/// One widget.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Widget {
    /// Grid column (0-23), row, width in columns and height in rows.
    pub(crate) x: i64,
    pub(crate) y: i64,
    pub(crate) width: i64,
    pub(crate) height: i64,
    pub(crate) title: String,
    pub(crate) kind: Kind,
}

/// What a widget shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Metric(MetricWidget),
    Text {
        markdown: String,
    },
    Alarms {
        arns: Vec<String>,
    },
    Log {
        query: String,
        region: Option<String>,
    },
    /// Explorer, custom or anything else: drawn as a labelled box.
    Other {
        kind: String,
    },
}

/// How a metric widget draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    TimeSeries,
    SingleValue,
    Gauge,
    Bar,
    Pie,
    Table,
}

/// A y axis' settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Axis {
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
    pub(crate) label: Option<String>,
}

/// A horizontal annotation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Annotation {
    pub(crate) value: f64,
    pub(crate) label: String,
    pub(crate) color: Option<String>,
    pub(crate) right: bool,
}

/// A metric widget.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricWidget {
    pub(crate) view: View,
    pub(crate) stacked: bool,
    pub(crate) region: Option<String>,
    pub(crate) period: i64,
    pub(crate) rows: Vec<Row>,
    pub(crate) left: Axis,
    pub(crate) right: Axis,
    pub(crate) annotations: Vec<Annotation>,
    /// `legend.position: hidden`.
    pub(crate) legend: bool,
    /// `annotations.alarms`: an alarm graph.
    pub(crate) alarm_arns: Vec<String>,
}

/// What one row queries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Query {
    Metric {
        namespace: String,
        name: String,
        dimensions: Vec<(String, String)>,
        stat: String,
    },
    Expression(String),
}

/// One metric row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The row's `id` (or `m<index>`).
    pub(crate) id: String,
    /// The row's `label`; `None` when unset or empty (CloudWatch then names the series).
    pub(crate) label: Option<String>,
    pub(crate) query: Query,
    pub(crate) period: i64,
    pub(crate) visible: bool,
    pub(crate) right: bool,
    pub(crate) color: Option<String>,
}

impl Row {
    /// The legend's text when the data source gives no better name.
    pub(crate) fn default_label(&self) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        match &self.query {
            Query::Metric { name, stat, .. } => format!("{name} ({stat})"),
            Query::Expression(expression) => {
                super::fetch::describe_search(expression).unwrap_or_else(|| expression.clone())
            }
        }
    }
}

/// The widgets of a dashboard body, in the body's order; `None` when it has no widget list.
pub(crate) fn widgets(body: &Value) -> Option<Vec<Widget>> {
    let list = body.get("widgets")?.as_array()?;
    Some(list.iter().map(widget).collect())
}

fn int(widget: &Map<String, Value>, key: &str, default: i64) -> i64 {
    widget.get(key).and_then(Value::as_i64).unwrap_or(default)
}

fn string(properties: &Map<String, Value>, key: &str) -> Option<String> {
    properties
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn widget(value: &Value) -> Widget {
    let empty = Map::new();
    let object = value.as_object().unwrap_or(&empty);
    let properties = object
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let width = int(object, "width", 6).clamp(1, GRID_COLUMNS);
    let x = int(object, "x", 0).clamp(0, GRID_COLUMNS - width);
    let kind_name = object.get("type").and_then(Value::as_str).unwrap_or("?");
    let kind = match kind_name {
        "metric" => Kind::Metric(metric(properties)),
        "text" => Kind::Text {
            markdown: string(properties, "markdown").unwrap_or_default(),
        },
        "alarm" => Kind::Alarms {
            arns: strings(properties.get("alarms")),
        },
        "log" => Kind::Log {
            query: string(properties, "query").unwrap_or_default(),
            region: string(properties, "region"),
        },
        other => Kind::Other {
            kind: other.to_owned(),
        },
    };
    Widget {
        x,
        y: int(object, "y", 0).max(0),
        width,
        height: int(object, "height", 6).clamp(1, 1000),
        title: string(properties, "title").unwrap_or_default(),
        kind,
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn axis(properties: &Map<String, Value>, side: &str) -> Axis {
    let Some(axis) = properties.get("yAxis").and_then(|a| a.get(side)) else {
        return Axis::default();
    };
    Axis {
        min: axis.get("min").and_then(Value::as_f64),
        max: axis.get("max").and_then(Value::as_f64),
        label: axis
            .get("label")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .map(str::to_owned),
    }
}

fn metric(properties: &Map<String, Value>) -> MetricWidget {
    let view = match properties.get("view").and_then(Value::as_str) {
        Some("singleValue") => View::SingleValue,
        Some("gauge") => View::Gauge,
        Some("bar") => View::Bar,
        Some("pie") => View::Pie,
        Some("table") => View::Table,
        _ => View::TimeSeries,
    };
    let period = properties
        .get("period")
        .and_then(Value::as_i64)
        .filter(|p| *p > 0)
        .unwrap_or(300);
    let stat = string(properties, "stat").unwrap_or_else(|| "Average".to_owned());
    let mut rows = Vec::new();
    let mut previous: Option<Vec<String>> = None;
    let list = properties
        .get("metrics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, row) in list.iter().enumerate() {
        let Some(items) = row.as_array().filter(|r| !r.is_empty()) else {
            continue;
        };
        let (names, options) = match items.last().and_then(Value::as_object) {
            Some(options) => (&items[..items.len() - 1], Some(options)),
            None => (items.as_slice(), None),
        };
        let option = |key: &str| options.and_then(|o| o.get(key));
        let query = if let Some(expression) = option("expression").and_then(Value::as_str) {
            Query::Expression(expression.to_owned())
        } else {
            let strings: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
            let Some(resolved) = resolve_row(previous.as_deref(), &strings) else {
                continue;
            };
            if resolved.len() < 2 {
                continue;
            }
            previous = Some(resolved.clone());
            Query::Metric {
                namespace: resolved[0].clone(),
                name: resolved[1].clone(),
                dimensions: resolved[2..]
                    .chunks(2)
                    .filter(|pair| pair.len() == 2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect(),
                stat: option("stat")
                    .and_then(Value::as_str)
                    .map_or_else(|| stat.clone(), str::to_owned),
            }
        };
        rows.push(Row {
            id: option("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("m{index}"), str::to_owned),
            label: option("label")
                .and_then(Value::as_str)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
            query,
            period: option("period").and_then(Value::as_i64).unwrap_or(period),
            visible: option("visible").and_then(Value::as_bool).unwrap_or(true),
            right: option("yAxis").and_then(Value::as_str) == Some("right"),
            color: option("color").and_then(Value::as_str).map(str::to_owned),
        });
    }
    let annotations = properties
        .get("annotations")
        .and_then(|a| a.get("horizontal"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| {
                    // A band is [{...}, {...}]: its first edge is drawn.
                    let a = a.as_array().and_then(|band| band.first()).unwrap_or(a);
                    Some(Annotation {
                        value: a.get("value")?.as_f64()?,
                        label: a
                            .get("label")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        color: a.get("color").and_then(Value::as_str).map(str::to_owned),
                        right: a.get("yAxis").and_then(Value::as_str) == Some("right"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    MetricWidget {
        view,
        stacked: properties.get("stacked").and_then(Value::as_bool) == Some(true),
        region: string(properties, "region"),
        period,
        rows,
        left: axis(properties, "left"),
        right: axis(properties, "right"),
        annotations,
        legend: properties
            .get("legend")
            .and_then(|l| l.get("position"))
            .and_then(Value::as_str)
            != Some("hidden"),
        alarm_arns: strings(properties.get("annotations").and_then(|a| a.get("alarms"))),
    }
}

/// The alarm name of an alarm ARN (`arn:aws:cloudwatch:<region>:<account>:alarm:<name>`).
pub(crate) fn alarm_name(arn: &str) -> &str {
    arn.split_once(":alarm:").map_or(arn, |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_expand_shorthands_and_take_the_widget_defaults() {
        let body = json!({"widgets": [{"type": "metric", "x": 2, "y": 3, "width": 8, "height": 5,
        "properties": {"title": "t", "stat": "Sum", "period": 60, "metrics": [
            ["NS", "A", "Service", "api", {"label": "a"}],
            [".", "B", ".", ".", {"yAxis": "right", "stat": "Maximum"}],
            ["...", {"visible": false, "id": "c"}],
            [{"expression": "a + b", "id": "e", "label": ""}]
        ]}}]});
        let widgets = widgets(&body).unwrap();
        let Kind::Metric(metric) = &widgets[0].kind else {
            panic!("{widgets:?}")
        };
        assert_eq!((widgets[0].x, widgets[0].width), (2, 8));
        let queries: Vec<_> = metric.rows.iter().map(|r| &r.query).collect();
        let dims = vec![("Service".to_owned(), "api".to_owned())];
        assert_eq!(
            queries[1],
            &Query::Metric {
                namespace: "NS".into(),
                name: "B".into(),
                dimensions: dims.clone(),
                stat: "Maximum".into()
            }
        );
        assert!(metric.rows[1].right);
        assert!(!metric.rows[2].visible);
        assert_eq!(metric.rows[2].id, "c");
        assert_eq!(metric.rows[3].label, None);
        assert_eq!(metric.rows[3].query, Query::Expression("a + b".into()));
    }

    #[test]
    fn a_widget_past_the_grid_is_pulled_back_onto_it() {
        let body = json!({"widgets": [{"type": "text", "x": 30, "width": 40, "properties": {}}]});
        let widget = &widgets(&body).unwrap()[0];
        assert_eq!((widget.x, widget.width), (0, 24));
    }
}
