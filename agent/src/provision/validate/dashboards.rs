//! Dashboard bodies: the top-level keys, widget types and their required properties, the
//! 24-column grid, at most 500 widgets, metric rows (with the `.` and `...` shorthands),
//! statistics and periods.

use serde_json::{Map, Value};

use super::{
    Checker, MAX_DIMENSIONS, MAX_NAME, child, integer_in, is_query_id, one_of, required_string,
    statistic, unfilled, unknown_keys,
};

/// Widgets per dashboard.
const MAX_WIDGETS: usize = 500;
/// Columns of the dashboard grid.
const GRID_COLUMNS: i64 = 24;
const WIDGET_TYPES: [&str; 6] = ["metric", "text", "log", "alarm", "explorer", "custom"];

/// A dashboard name: the prefix and the file stem, `[A-Za-z0-9-_]`, at most 255.
pub(in crate::provision) fn dashboard_name(check: &mut Checker<'_>, stem: &str, name: &str) {
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        check.report_file(format!(
            "the file name gives the dashboard name {name:?}; names are letters, digits, - and _ only"
        ));
    } else if name.len() > MAX_NAME {
        check.report_file(format!(
            "the dashboard name {name:?} is {} characters; at most {MAX_NAME}",
            name.len()
        ));
    }
}

/// A dashboard body.
pub(in crate::provision) fn dashboard(check: &mut Checker<'_>, body: &Value) {
    let Some(root) = body.as_object() else {
        check.report("$", "a dashboard body is a JSON object with \"widgets\"");
        return;
    };
    unknown_keys(
        check,
        "$",
        root,
        &["widgets", "start", "end", "periodOverride", "variables"],
    );
    one_of(check, "$", root, "periodOverride", &["auto", "inherit"]);
    let Some(widgets) = root.get("widgets") else {
        check.report("$.widgets", "required (an array of at most 500 widgets)");
        return;
    };
    let Some(widgets) = widgets.as_array() else {
        check.report("$.widgets", "must be an array");
        return;
    };
    if widgets.len() > MAX_WIDGETS {
        check.report(
            "$.widgets",
            format!(
                "{} widgets; a dashboard holds at most {MAX_WIDGETS}",
                widgets.len()
            ),
        );
    }
    for (i, widget) in widgets.iter().enumerate() {
        self::widget(check, &format!("$.widgets[{i}]"), widget);
    }
}

fn widget(check: &mut Checker<'_>, path: &str, widget: &Value) {
    let Some(widget) = widget.as_object() else {
        check.report(path, "a widget is an object");
        return;
    };
    unknown_keys(
        check,
        path,
        widget,
        &["type", "x", "y", "width", "height", "properties"],
    );
    let kind = match widget.get("type").and_then(Value::as_str) {
        Some(kind) if WIDGET_TYPES.contains(&kind) => Some(kind),
        Some(kind) => {
            check.report(
                &child(path, "type"),
                format!(
                    "unknown widget type {kind:?}; one of {}",
                    WIDGET_TYPES.join(", ")
                ),
            );
            None
        }
        None => {
            check.report(
                &child(path, "type"),
                format!("required: one of {}", WIDGET_TYPES.join(", ")),
            );
            None
        }
    };
    let width = integer_in(check, path, widget, "width", 1, GRID_COLUMNS).unwrap_or(6);
    integer_in(check, path, widget, "height", 1, 1000);
    integer_in(check, path, widget, "y", 0, i64::from(i32::MAX));
    if let Some(x) = integer_in(check, path, widget, "x", 0, GRID_COLUMNS - 1)
        && x + width > GRID_COLUMNS
    {
        check.report(
            &child(path, "x"),
            format!(
                "x + width = {} is past the {GRID_COLUMNS}-column grid",
                x + width
            ),
        );
    }
    let properties_path = child(path, "properties");
    let Some(properties) = widget.get("properties") else {
        check.report(&properties_path, "required");
        return;
    };
    let Some(properties) = properties.as_object() else {
        check.report(&properties_path, "must be an object");
        return;
    };
    let path = properties_path.as_str();
    match kind {
        Some("metric") => metric_widget(check, path, properties),
        Some("text") => {
            required_string(check, path, properties, "markdown");
            one_of(
                check,
                path,
                properties,
                "background",
                &["solid", "transparent"],
            );
        }
        Some("log") => {
            required_string(check, path, properties, "region");
            one_of(
                check,
                path,
                properties,
                "view",
                &["table", "timeSeries", "bar", "pie"],
            );
            if let Some(query) = required_string(check, path, properties, "query")
                && !query.contains("SOURCE '")
            {
                check.report(
                    &child(path, "query"),
                    "a Logs Insights query of a dashboard starts with SOURCE '<log group>' |",
                );
            }
        }
        Some("alarm") => alarm_widget(check, path, properties),
        Some("explorer") => explorer_widget(check, path, properties),
        Some("custom") => {
            if let Some(endpoint) = required_string(check, path, properties, "endpoint")
                && !endpoint.starts_with("arn:")
            {
                check.report(&child(path, "endpoint"), "must be a Lambda function ARN");
            }
        }
        _ => {}
    }
}

fn metric_widget(check: &mut Checker<'_>, path: &str, properties: &Map<String, Value>) {
    required_string(check, path, properties, "region");
    one_of(
        check,
        path,
        properties,
        "view",
        &["timeSeries", "singleValue", "gauge", "bar", "pie", "table"],
    );
    if let Some(stat) = properties.get("stat") {
        statistic(check, &child(path, "stat"), stat);
    }
    if let Some(period) = properties.get("period") {
        widget_period(check, &child(path, "period"), period);
    }
    let metrics_path = child(path, "metrics");
    let rows = match properties.get("metrics") {
        None => &[][..],
        Some(Value::Array(rows)) => rows.as_slice(),
        Some(_) => {
            check.report(&metrics_path, "must be an array of metric rows");
            return;
        }
    };
    let alarm_graph = properties
        .get("annotations")
        .and_then(|a| a.get("alarms"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if rows.is_empty() && !alarm_graph {
        check.report(
            &metrics_path,
            "required: at least one metric row (or annotations.alarms for an alarm graph)",
        );
    }
    let mut previous: Option<Vec<String>> = None;
    for (j, row) in rows.iter().enumerate() {
        let row_path = format!("{metrics_path}[{j}]");
        let Some(items) = row.as_array().filter(|r| !r.is_empty()) else {
            check.report(&row_path, "a metric row is a non-empty array");
            continue;
        };
        if let Some(options) = items[0].as_object() {
            // An expression row: [{"expression": "...", "id": "e1", ...}].
            if items.len() > 1 {
                check.report(&row_path, "an expression row holds one object");
            }
            let options_path = format!("{row_path}[0]");
            match options.get("expression").and_then(Value::as_str) {
                Some(expression) => check.searched(&child(&options_path, "expression"), expression),
                None => check.report(
                    &child(&options_path, "expression"),
                    "required in a row that starts with an object",
                ),
            }
            metric_options(check, &options_path, options);
            continue;
        }
        let (names_part, options) = match items.last().and_then(Value::as_object) {
            Some(options) => (&items[..items.len() - 1], Some(options)),
            None => (items.as_slice(), None),
        };
        let mut strings = Vec::with_capacity(names_part.len());
        for (k, item) in names_part.iter().enumerate() {
            match item.as_str() {
                Some(s) => strings.push(s),
                None => check.report(
                    &format!("{row_path}[{k}]"),
                    "must be a string (only the last item may be an options object)",
                ),
            }
        }
        if strings.len() != names_part.len() {
            continue;
        }
        let Some(resolved) = resolve_row(previous.as_deref(), &strings) else {
            check.report(
                &row_path,
                "\".\" or \"...\" repeats the row before, and there is none to repeat",
            );
            continue;
        };
        if resolved.len() < 2 || resolved.len() % 2 != 0 {
            check.report(
                &row_path,
                "a metric row is [Namespace, MetricName, DimensionName, DimensionValue, ..., {options}]",
            );
        } else if (resolved.len() - 2) / 2 > MAX_DIMENSIONS {
            check.report(&row_path, format!("more than {MAX_DIMENSIONS} dimensions"));
        } else {
            check.sidecar_metric(&format!("{row_path}[1]"), &resolved[0], &resolved[1]);
        }
        if let Some(options) = options {
            metric_options(check, &format!("{row_path}[{}]", items.len() - 1), options);
        }
        previous = Some(resolved);
    }
}

/// Expands the `"."` (same as the row before at this position) and `"..."` (the row
/// before, with the items that follow replacing its last ones) shorthands.
pub(in crate::provision) fn resolve_row(
    previous: Option<&[String]>,
    row: &[&str],
) -> Option<Vec<String>> {
    if row.first() == Some(&"...") {
        let previous = previous?;
        let rest = &row[1..];
        let keep = previous.len().checked_sub(rest.len())?;
        let mut out: Vec<String> = previous[..keep].to_vec();
        for (i, item) in rest.iter().enumerate() {
            out.push(if *item == "." {
                previous[keep + i].clone()
            } else {
                (*item).to_owned()
            });
        }
        return Some(out);
    }
    row.iter()
        .enumerate()
        .map(|(i, item)| {
            if *item == "." {
                previous.and_then(|p| p.get(i)).cloned()
            } else {
                Some((*item).to_owned())
            }
        })
        .collect()
}

fn metric_options(check: &mut Checker<'_>, path: &str, options: &Map<String, Value>) {
    unknown_keys(
        check,
        path,
        options,
        &[
            "accountId",
            "color",
            "expression",
            "id",
            "label",
            "period",
            "region",
            "stat",
            "visible",
            "yAxis",
        ],
    );
    if let Some(id) = options.get("id")
        && !id.as_str().is_some_and(is_query_id)
    {
        check.report(
            &child(path, "id"),
            "an id starts with a lower-case letter, then letters, digits and _",
        );
    }
    if let Some(stat) = options.get("stat") {
        statistic(check, &child(path, "stat"), stat);
    }
    if let Some(period) = options.get("period") {
        widget_period(check, &child(path, "period"), period);
    }
    if options.get("visible").is_some_and(|v| !v.is_boolean()) {
        check.report(&child(path, "visible"), "must be true or false");
    }
    one_of(check, path, options, "yAxis", &["left", "right"]);
}

fn alarm_widget(check: &mut Checker<'_>, path: &str, properties: &Map<String, Value>) {
    let alarms_path = child(path, "alarms");
    match properties.get("alarms").and_then(Value::as_array) {
        Some(alarms) if !alarms.is_empty() && alarms.len() <= 100 => {
            for (i, arn) in alarms.iter().enumerate() {
                if !arn.as_str().is_some_and(|a| {
                    (a.starts_with("arn:") && a.contains(":alarm:")) || unfilled(a)
                }) {
                    check.report(
                        &format!("{alarms_path}[{i}]"),
                        "must be an alarm ARN (arn:aws:cloudwatch:<region>:<account>:alarm:<name>)",
                    );
                }
            }
        }
        _ => check.report(&alarms_path, "required: an array of 1 to 100 alarm ARNs"),
    }
    one_of(
        check,
        path,
        properties,
        "sortBy",
        &["default", "stateUpdatedTimestamp", "timestamp"],
    );
}

fn explorer_widget(check: &mut Checker<'_>, path: &str, properties: &Map<String, Value>) {
    let metrics_path = child(path, "metrics");
    match properties.get("metrics").and_then(Value::as_array) {
        Some(metrics) if !metrics.is_empty() => {
            for (i, metric) in metrics.iter().enumerate() {
                let ok = metric.get("metricName").is_some_and(Value::is_string)
                    && metric.get("resourceType").is_some_and(Value::is_string);
                if !ok {
                    check.report(
                        &format!("{metrics_path}[{i}]"),
                        "an explorer metric is {\"metricName\": ..., \"resourceType\": ..., \"stat\": ...}",
                    );
                }
                if let Some(stat) = metric.get("stat") {
                    statistic(check, &format!("{metrics_path}[{i}].stat"), stat);
                }
            }
        }
        _ => check.report(&metrics_path, "required: a non-empty array"),
    }
}

/// Graph periods: 1, 5, 10, 20, 30 or a multiple of 60 seconds.
fn widget_period(check: &mut Checker<'_>, path: &str, value: &Value) {
    let ok = value
        .as_i64()
        .is_some_and(|p| matches!(p, 1 | 5 | 10 | 20 | 30) || (p > 0 && p % 60 == 0));
    if !ok {
        check.report(
            path,
            format!("{value} is not a period: 1, 5, 10, 20, 30 or a multiple of 60 (seconds)"),
        );
    }
}
