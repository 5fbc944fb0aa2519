//! `agent provision preview` and `plan --preview`: dashboards drawn before they are applied.
//!
//! Each dashboard becomes one SVG (hand-written by `render`: the 24-column grid, each widget
//! at its place and drawn as its type and `view` say), embedded in a self-contained HTML page
//! and rasterised to a PNG (`png`, resvg). The data comes from `fetch` (GetMetricData,
//! ListMetrics for SEARCH, DescribeAlarms, FilterLogEvents), or with `--offline` from nothing:
//! the files alone give the layout, titles and legends, and the output is byte-stable.

mod data;
mod fetch;
mod markdown;
mod math;
mod model;
mod png;
mod render;
mod svg;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::Value;

use self::data::{DashboardData, Window};
use self::fetch::Source;
use self::model::Widget;
use self::png::Rasterizer;
pub use self::render::{COLUMN, GAP, HEADER, MARGIN, ROW, WIDTH, border_color, widget_box};
use self::svg::{Svg, escape};
use super::{Definitions, Inputs, PreviewArgs, Target};

/// One written page.
#[derive(Debug)]
struct Written {
    stem: String,
    name: String,
    note: String,
}

fn stem(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("dashboard")
        .to_owned()
}

/// The HTML page around an SVG: nothing external, no script, no timestamp.
fn html(title: &str, svg: &str, note: &str, png: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>html,body{{margin:0;padding:0;background:#f2f3f3}}\
         svg{{display:block}}p{{font:12px 'DejaVu Sans',Verdana,sans-serif;color:#5f6b7a;\
         margin:4px 12px 12px}}</style>\n</head>\n<body>\n{svg}<p>{note} · \
         <a href=\"{png}\">PNG</a> · <a href=\"index.html\">all dashboards</a></p>\n\
         </body>\n</html>\n",
        title = escape(title),
        note = escape(note),
        png = escape(png),
    )
}

fn index(title: &str, pages: &[Written]) -> String {
    let mut items = String::new();
    for page in pages {
        items.push_str(&format!(
            "<li><a href=\"{stem}.html\">{name}</a> (<a href=\"{stem}.png\">PNG</a>): {note}<br>\
             <a href=\"{stem}.html\"><img src=\"{stem}.png\" width=\"608\" alt=\"{name}\"></a></li>\n",
            stem = escape(&page.stem),
            name = escape(&page.name),
            note = escape(&page.note),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>body{{font:14px 'DejaVu Sans',Verdana,sans-serif;\
         margin:16px;background:#f2f3f3;color:#16191f}}li{{margin:0 0 24px}}img{{border:1px solid \
         #d1d5db;margin-top:6px}}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<ul>\n{items}</ul>\n\
         </body>\n</html>\n",
        title = escape(title),
    )
}

/// Writes `<stem>.html` and `<stem>.png` of one SVG document.
fn write_page(
    dir: &Path,
    rasterizer: &Rasterizer,
    stem: &str,
    title: &str,
    svg: &str,
    note: &str,
) -> Result<(), String> {
    let png = rasterizer
        .png(svg)
        .map_err(|e| format!("{stem}: cannot rasterise: {e}"))?;
    let write = |name: String, bytes: &[u8]| {
        std::fs::write(dir.join(&name), bytes)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(&name).display()))
    };
    write(format!("{stem}.png"), &png)?;
    write(
        format!("{stem}.html"),
        html(title, svg, note, &format!("{stem}.png")).as_bytes(),
    )
}

/// One dashboard as a whole SVG document.
fn dashboard_svg(name: &str, subtitle: &str, widgets: &[Widget], data: &DashboardData) -> String {
    let mut svg = Svg::new();
    render::dashboard(&mut svg, (0.0, 0.0), "d", (name, subtitle), widgets, data);
    svg.finish(WIDTH, render::height(widgets))
}

fn window_text(window: Option<Window>, region: &str) -> String {
    match window {
        Some(window) => {
            let span = window.end - window.start;
            let span = if span % 3600 == 0 {
                format!("{}h", span / 3600)
            } else {
                format!("{}m", span / 60)
            };
            format!(
                "{region} · the last {span} to {} UTC",
                render_clock(window.end)
            )
        }
        None => String::new(),
    }
}

fn render_clock(t: i64) -> String {
    let seconds = t.rem_euclid(86_400);
    format!("{:02}:{:02}", seconds / 3600, seconds % 3600 / 60)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `agent provision preview`: returns the exit code.
pub(super) fn run(
    inputs: &Inputs,
    target: &Target,
    args: &PreviewArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let definitions = match super::load(inputs) {
        Ok(definitions) => definitions,
        Err(problems) => return super::report_problems(&problems, err),
    };
    let unknown: Vec<&String> = args
        .only
        .iter()
        .filter(|name| {
            !definitions
                .dashboards
                .iter()
                .any(|d| stem(&d.file) == **name)
        })
        .collect();
    if !unknown.is_empty() {
        let _ = writeln!(
            err,
            "agent provision preview: no dashboard file named {unknown:?}"
        );
        return super::EX_USAGE;
    }
    if let Err(error) = std::fs::create_dir_all(&args.out) {
        let _ = writeln!(
            err,
            "agent provision preview: cannot create {}: {error}",
            args.out.display()
        );
        return 1;
    }
    let rasterizer = Rasterizer::new();
    if !rasterizer.has_fonts() {
        let _ = writeln!(
            err,
            "warning: no fonts found: the PNGs have no text (install fonts-dejavu-core)"
        );
    }
    let chosen: Vec<_> = definitions
        .dashboards
        .iter()
        .filter(|d| args.only.is_empty() || args.only.contains(&stem(&d.file)))
        .collect();
    let parsed: Vec<(String, String, Vec<Widget>)> = chosen
        .iter()
        .map(|d| {
            (
                stem(&d.file),
                d.name.clone(),
                model::widgets(&d.body).unwrap_or_default(),
            )
        })
        .collect();
    let datas: Vec<DashboardData> = if args.offline {
        parsed
            .iter()
            .map(|(_, _, widgets)| DashboardData::offline(widgets.len()))
            .collect()
    } else {
        let Some(datas) = online(&definitions, target, args, &parsed, err) else {
            return 1;
        };
        datas
    };
    let region = region(&definitions, target);
    let mut pages = Vec::new();
    for ((stem, name, widgets), data) in parsed.iter().zip(&datas) {
        let file = chosen
            .iter()
            .find(|d| &d.name == name)
            .map_or("", |d| d.file.as_str());
        let note = if args.offline {
            format!("offline preview of {file}: layout and titles from the file alone, no data")
        } else {
            format!(
                "{file} with data from CloudWatch ({})",
                window_text(data.window, &region)
            )
        };
        let svg = dashboard_svg(name, &note, widgets, data);
        if let Err(error) = write_page(&args.out, &rasterizer, stem, name, &svg, &note) {
            let _ = writeln!(err, "agent provision preview: {error}");
            return 1;
        }
        let _ = writeln!(
            out,
            "wrote {}",
            args.out.join(format!("{stem}.png")).display()
        );
        pages.push(Written {
            stem: stem.clone(),
            name: name.clone(),
            note,
        });
    }
    let title = format!("Dashboards {}*", definitions.prefix);
    let path = args.out.join("index.html");
    if let Err(error) = std::fs::write(&path, index(&title, &pages)) {
        let _ = writeln!(
            err,
            "agent provision preview: cannot write {}: {error}",
            path.display()
        );
        return 1;
    }
    let _ = writeln!(out, "open {}", path.display());
    0
}

fn region(definitions: &Definitions, target: &Target) -> String {
    target
        .region
        .clone()
        .or_else(|| definitions.region.clone())
        .unwrap_or_default()
}

/// Fetches every dashboard's data; `None` (reported) when the runtime cannot start.
fn online(
    definitions: &Definitions,
    target: &Target,
    args: &PreviewArgs,
    parsed: &[(String, String, Vec<Widget>)],
    err: &mut dyn Write,
) -> Option<Vec<DashboardData>> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        let _ = writeln!(err, "agent provision: cannot start the runtime");
        return None;
    };
    let end = now();
    let window = Window {
        start: end - args.since as i64,
        end,
    };
    let region = target.region.as_deref().or(definitions.region.as_deref());
    Some(runtime.block_on(async {
        let mut source = Source::new(region, target.endpoint.as_deref()).await;
        let mut datas = Vec::new();
        for (_, _, widgets) in parsed {
            datas.push(source.dashboard(widgets, window).await);
        }
        datas
    }))
}

/// `plan --preview DIR`: for each dashboard the plan creates or updates, the current body
/// (as GetDashboard returned it) and the new one side by side in one page and one PNG.
pub(super) async fn plan_preview(
    dir: &Path,
    definitions: &Definitions,
    current: &BTreeMap<String, Option<String>>,
    plan: &super::Plan,
    target: &Target,
    out: &mut dyn Write,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let rasterizer = Rasterizer::new();
    let end = now();
    let window = Window {
        start: end - 3 * 3600,
        end,
    };
    let region = target.region.as_deref().or(definitions.region.as_deref());
    let mut source = Source::new(region, target.endpoint.as_deref()).await;
    let mut pages = Vec::new();
    for change in &plan.changes {
        if change.kind != super::Kind::Dashboard
            || !matches!(
                change.action,
                super::Action::Create | super::Action::Update(_)
            )
        {
            continue;
        }
        let Some(definition) = definitions
            .dashboards
            .iter()
            .find(|d| d.name == change.name)
        else {
            continue;
        };
        let old_body: Option<Value> = current
            .get(&change.name)
            .cloned()
            .flatten()
            .and_then(|text| serde_json::from_str(&text).ok());
        let old_widgets = old_body
            .as_ref()
            .and_then(model::widgets)
            .unwrap_or_default();
        let new_widgets = model::widgets(&definition.body).unwrap_or_default();
        let old_data = source.dashboard(&old_widgets, window).await;
        let new_data = source.dashboard(&new_widgets, window).await;
        let (old_title, changed) = match &change.action {
            super::Action::Update(paths) => ("current (GetDashboard)".to_owned(), paths.join(", ")),
            _ => (
                "current: does not exist yet".to_owned(),
                "created".to_owned(),
            ),
        };
        let height = render::height(&old_widgets).max(render::height(&new_widgets));
        let mut svg = Svg::new();
        render::dashboard(
            &mut svg,
            (0.0, 0.0),
            "old",
            (&old_title, &change.name),
            &old_widgets,
            &old_data,
        );
        svg.rect(WIDTH + 2.0, 0.0, 4.0, height, "#8d99a8");
        render::dashboard(
            &mut svg,
            (WIDTH + 8.0, 0.0),
            "new",
            (
                &format!("new ({})", definition.file),
                &format!("changed: {changed}"),
            ),
            &new_widgets,
            &new_data,
        );
        let svg = svg.finish(2.0 * WIDTH + 8.0, height);
        let stem = stem(&definition.file);
        let note = format!(
            "{}: current and new side by side; changed: {changed}",
            change.name
        );
        write_page(dir, &rasterizer, &stem, &change.name, &svg, &note)?;
        let _ = writeln!(
            out,
            "preview: {}",
            dir.join(format!("{stem}.png")).display()
        );
        pages.push(Written {
            stem,
            name: change.name.clone(),
            note,
        });
    }
    let title = format!("Plan for {}*: changed dashboards", definitions.prefix);
    std::fs::write(dir.join("index.html"), index(&title, &pages))
        .map_err(|e| format!("cannot write {}: {e}", dir.join("index.html").display()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
