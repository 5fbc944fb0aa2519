//! `agent provision preview`: the repository's dashboards drawn offline (byte-stable PNGs
//! with every widget's box where the grid puts it), drawn online from metrics and logs
//! published to the AWS emulator (charts where there is data, none where there is none),
//! `plan --preview` drawing an edited dashboard next to the applied one, and the HTML page as
//! headless Chromium shows it (the same boxes, the same charts).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use agent::provision::preview::{HEADER, MARGIN, ROW, WIDTH, border_color, widget_box};
use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use serde_json::Value;

use crate::support::{Moto, agent_command, repo_root};

/// The demo's variables (scripts/demo.sh): its namespace and log groups.
const VARS: [&str; 8] = [
    "--var",
    "AccountId=123456789012",
    "--var",
    "Namespace=Demo/Api",
    "--var",
    "LogGroup=/demo/api",
    "--var",
    "AgentLogGroup=/demo/agent",
];
/// The first series colour.
const SERIES: [u8; 3] = [0x1f, 0x77, 0xb4];

/// A decoded RGBA image.
struct Image {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Image {
    fn read(path: &Path) -> Self {
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        ));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        pixels.truncate(info.buffer_size());
        let channels = info.color_type.samples();
        // Normalise to RGBA.
        let pixels = pixels
            .chunks(channels)
            .flat_map(|p| match channels {
                4 => [p[0], p[1], p[2], p[3]],
                3 => [p[0], p[1], p[2], 255],
                _ => [p[0], p[0], p[0], 255],
            })
            .collect();
        Self {
            width: info.width,
            height: info.height,
            pixels,
        }
    }

    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 4) as usize;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    fn distinct_colors(&self) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        for p in self.pixels.chunks(4) {
            seen.insert([p[0], p[1], p[2]]);
        }
        seen.len()
    }

    /// Pixels within `tolerance` of `color` inside the rectangle.
    fn count(&self, color: [u8; 3], (x, y, w, h): (f64, f64, f64, f64), tolerance: u8) -> usize {
        let mut n = 0;
        for py in y.max(0.0) as u32..((y + h) as u32).min(self.height) {
            for px in x.max(0.0) as u32..((x + w) as u32).min(self.width) {
                if close(self.at(px, py), color, tolerance) {
                    n += 1;
                }
            }
        }
        n
    }
}

fn close(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
}

/// The widgets of a dashboard file: (x, y, width, height, title).
fn widgets(file: &Path) -> Vec<(i64, i64, i64, i64, String)> {
    let body: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["x"].as_i64().unwrap(),
                w["y"].as_i64().unwrap(),
                w["width"].as_i64().unwrap(),
                w["height"].as_i64().unwrap(),
                w["properties"]["title"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Points a command at the emulator: Logs and the rest straight to moto, CloudWatch through
/// its CBOR front (the SDK picks each service's endpoint from the environment).
fn at_emulator(command: &mut std::process::Command, moto: &Moto) {
    command
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", &moto.cloudwatch_endpoint);
}

fn preview(out: &Path, moto: Option<&Moto>, extra: &[&str]) -> String {
    let mut command = agent_command();
    command
        .current_dir(repo_root())
        .args(["provision", "preview", "--env", "dev"])
        .args(VARS)
        .arg("--out")
        .arg(out)
        .args(extra);
    if let Some(moto) = moto {
        at_emulator(&mut command, moto);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Each widget's border colour is where the grid puts its box: checked a few pixels in from
/// each corner along the edges, within `slack` pixels (Chromium and resvg both land exactly).
fn assert_boxes(image: &Image, file: &Path, slack: u32, what: &str) {
    for (i, (x, y, w, h, title)) in widgets(file).into_iter().enumerate() {
        let (left, top, width, height) = widget_box(x, y, w, h);
        let color = border_color(i);
        let found = |px: f64, py: f64| {
            let (px, py) = (px as i64, py as i64);
            (-(slack as i64)..=slack as i64).any(|dx| {
                (-(slack as i64)..=slack as i64).any(|dy| {
                    let (qx, qy) = (px + dx, py + dy);
                    qx >= 0
                        && qy >= 0
                        && (qx as u32) < image.width
                        && (qy as u32) < image.height
                        && close(image.at(qx as u32, qy as u32), color, 2)
                })
            })
        };
        for (px, py) in [
            (left + 6.0, top),
            (left, top + 6.0),
            (left + width - 7.0, top + height - 1.0),
            (left + width - 1.0, top + height - 7.0),
        ] {
            assert!(
                found(px, py),
                "{what}: {}: widget {i} ({title:?}) has no border {color:?} near ({px}, {py})",
                file.display()
            );
        }
    }
}

#[test]
#[allow(
    clippy::print_stderr,
    reason = "the render time the issue asks to report"
)]
fn offline_previews_are_byte_stable_pngs_with_every_widget_in_its_box() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let stdout = preview(first.path(), None, &["--offline"]);
    eprintln!("offline preview of 3 dashboards: {:?}", started.elapsed());
    assert!(stdout.contains("index.html"), "{stdout}");
    preview(second.path(), None, &["--offline"]);
    let mut names: Vec<String> = std::fs::read_dir(first.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api-overview.html",
            "api-overview.png",
            "index.html",
            "infrastructure.html",
            "infrastructure.png",
            "sidecar.html",
            "sidecar.png"
        ]
    );
    for name in &names {
        let a = std::fs::read(first.path().join(name)).unwrap();
        let b = std::fs::read(second.path().join(name)).unwrap();
        assert!(a == b, "{name} differs between two offline runs");
        if name.ends_with(".html") {
            let html = String::from_utf8(a).unwrap();
            for external in ["http://", "https://", "<script", "<link"] {
                let allowed = external == "http://" && html.contains("http://www.w3.org/2000/svg");
                assert!(
                    allowed || !html.contains(external),
                    "{name} refers to something external: {external}"
                );
            }
            assert!(!html.contains("${"), "{name}: a placeholder is left");
        }
    }
    for stem in ["api-overview", "infrastructure", "sidecar"] {
        let file = repo_root().join(format!("dashboards/{stem}.json"));
        let image = Image::read(&first.path().join(format!("{stem}.png")));
        let rows = widgets(&file).iter().map(|w| w.1 + w.3).max().unwrap();
        assert_eq!(image.width, WIDTH as u32, "{stem}");
        assert_eq!(
            image.height,
            (HEADER + rows as f64 * ROW + MARGIN) as u32,
            "{stem}"
        );
        let png_bytes = std::fs::metadata(first.path().join(format!("{stem}.png")))
            .unwrap()
            .len();
        assert!(png_bytes > 20_000, "{stem}.png is only {png_bytes} bytes");
        // Not blank: text, boxes and grid lines give many shades.
        assert!(
            image.distinct_colors() > 50,
            "{stem}: {} colours",
            image.distinct_colors()
        );
        assert_boxes(&image, &file, 0, "PNG");
        // Text was drawn (the title of the first metric widget, in dark pixels).
        let (x, y, w, _) = widget_box(0, 2, 12, 6);
        let dark = image.count([0x16, 0x19, 0x1f], (x, y, w, 30.0), 40);
        assert!(
            dark > 100,
            "{stem}: no title text drawn ({dark} dark pixels)"
        );
    }
}

/// Publishes an hour of the sidecar's metrics (EventsIn, EventsOut, Heartbeat,
/// RequestCount per route) and a few error log lines, as the demo would.
async fn publish(moto: &Moto) {
    let endpoint = moto.endpoint.as_str();
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&moto.cloudwatch_endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(config);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let dimension = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
    for minute in 0..60 {
        let t = DateTime::from_secs(now - minute * 60 - 30);
        let mut data = Vec::new();
        for (name, value) in [("EventsIn", 100.0), ("EventsOut", 90.0), ("Heartbeat", 1.0)] {
            data.push(
                MetricDatum::builder()
                    .metric_name(name)
                    .dimensions(dimension("Environment", "dev"))
                    .dimensions(dimension("Service", "api"))
                    .timestamp(t)
                    .value(value + (minute % 7) as f64)
                    .build(),
            );
        }
        for route in ["/health", "/api/users/{id}"] {
            data.push(
                MetricDatum::builder()
                    .metric_name("RequestCount")
                    .dimensions(dimension("Environment", "dev"))
                    .dimensions(dimension("Method", "GET"))
                    .dimensions(dimension("Route", route))
                    .dimensions(dimension("Service", "api"))
                    .timestamp(t)
                    .value(10.0 + (minute % 5) as f64)
                    .build(),
            );
        }
        cloudwatch
            .put_metric_data()
            .namespace("Demo/Api")
            .set_metric_data(Some(data))
            .send()
            .await
            .unwrap();
    }
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    let logs = aws_sdk_cloudwatchlogs::Client::from_conf(config);
    logs.create_log_group()
        .log_group_name("/demo/api")
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name("/demo/api")
        .log_stream_name("api")
        .send()
        .await
        .unwrap();
    let events = (0..6)
        .map(|i| {
            let level = if i % 2 == 0 { "error" } else { "info" };
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp((now - 600 + i * 60) * 1000)
                .message(format!(
                    r#"{{"level":"{level}","message":"request","error_kind":"redis_unavailable","route":"/api/health/redis","status":503,"request_id":"preview-{i}"}}"#
                ))
                .build()
                .unwrap()
        })
        .collect();
    logs.put_log_events()
        .log_group_name("/demo/api")
        .log_stream_name("api")
        .set_log_events(Some(events))
        .send()
        .await
        .unwrap();
}

/// Series pixels in a widget's plot (the box less its title and legend bands): the first
/// series' line, or its stacked area (the colour at 45% over white).
fn series_pixels(image: &Image, (x, y, w, h): (i64, i64, i64, i64)) -> usize {
    let (left, top, width, height) = widget_box(x, y, w, h);
    let plot = (left + 50.0, top + 32.0, width - 60.0, height - 60.0);
    let area = SERIES.map(|c| (0.45 * f64::from(c) + 0.55 * 255.0).round() as u8);
    image.count(SERIES, plot, 12) + image.count(area, plot, 6)
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.is_file())
        })
}

/// A screenshot of `html` at `width` × `height` CSS pixels (device scale 1).
fn screenshot(chromium: &Path, html: &Path, width: u32, height: u32) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let output = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--force-color-profile=srgb",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        shot.is_file(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Image::read(&shot)
}

#[test]
#[allow(
    clippy::print_stderr,
    reason = "the render time, and the message when Chromium is not there"
)]
fn previews_draw_published_data_and_chromium_shows_the_same_page() {
    let moto = Moto::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(publish(&moto));
    // The alarms exist (their states are drawn): apply as the demo does.
    let mut apply = agent_command();
    apply
        .current_dir(repo_root())
        .args(["provision", "apply", "--env", "dev"])
        .args(VARS);
    at_emulator(&mut apply, &moto);
    let output = apply.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    preview(out.path(), Some(&moto), &["--since", "2h"]);
    eprintln!("online preview of 3 dashboards: {:?}", started.elapsed());

    let sidecar = repo_root().join("dashboards/sidecar.json");
    let image = Image::read(&out.path().join("sidecar.png"));
    // "Log events in / out" (published) is drawn; "Retries by reason" (never published) is
    // not, and says why.
    let with_data = series_pixels(&image, (0, 2, 12, 6));
    let without = series_pixels(&image, (0, 8, 8, 6));
    assert!(with_data > 100, "events in/out: {with_data} series pixels");
    assert!(without < 20, "retries: {without} series pixels");
    let html = std::fs::read_to_string(out.path().join("sidecar.html")).unwrap();
    assert!(
        html.contains("SEARCH found no metric"),
        "the empty SEARCH says so"
    );
    assert!(
        html.contains(">OK<") || html.contains(">NO DATA<"),
        "alarm states drawn"
    );

    let api = repo_root().join("dashboards/api-overview.json");
    let api_image = Image::read(&out.path().join("api-overview.png"));
    // Requests per route: a SEARCH, expanded through ListMetrics, stacked.
    assert!(
        series_pixels(&api_image, (0, 2, 12, 6)) > 300,
        "requests per route"
    );
    let api_html = std::fs::read_to_string(out.path().join("api-overview.html")).unwrap();
    assert!(
        api_html.contains("/api/users/{id}"),
        "the SEARCH's series are labelled by route"
    );
    assert!(
        api_html.contains("preview-4"),
        "recent error lines are listed"
    );
    assert!(
        !api_html.contains("preview-3"),
        "info lines are filtered out"
    );
    assert!(api_html.contains("approximation, not Logs Insights"));

    // plan --preview: one edited dashboard, drawn current and new side by side.
    let edited = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_root().join("dashboards")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), edited.path().join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(&sidecar).unwrap();
    std::fs::write(
        edited.path().join("sidecar.json"),
        text.replace("Log events in / out (per minute)", "Log events (edited)"),
    )
    .unwrap();
    let plan_dir = tempfile::tempdir().unwrap();
    let mut plan = agent_command();
    plan.current_dir(repo_root())
        .args(["provision", "plan", "--env", "dev"])
        .args(VARS)
        .arg("--dashboards")
        .arg(edited.path())
        .arg("--preview")
        .arg(plan_dir.path());
    at_emulator(&mut plan, &moto);
    let output = plan.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 to update"), "{stdout}");
    let pair = Image::read(&plan_dir.path().join("sidecar.png"));
    assert_eq!(
        pair.width,
        (2.0 * WIDTH + 8.0) as u32,
        "two dashboards side by side"
    );
    let pair_html = std::fs::read_to_string(plan_dir.path().join("sidecar.html")).unwrap();
    assert!(
        pair_html.contains("Log events in / out (per minute)"),
        "the current title"
    );
    assert!(pair_html.contains("Log events (edited)"), "the new title");
    assert!(
        !plan_dir.path().join("api-overview.png").exists(),
        "only changed dashboards"
    );

    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED the Chromium half: no chromium on PATH (scripts/services.sh install \
             installs Debian's package)"
        );
        return;
    };
    for (stem, file, png) in [
        ("sidecar", &sidecar, &image),
        ("api-overview", &api, &api_image),
    ] {
        let shot = screenshot(
            &chromium,
            &out.path().join(format!("{stem}.html")),
            png.width,
            png.height,
        );
        assert!(
            shot.distinct_colors() > 50,
            "{stem}: the screenshot is blank"
        );
        assert_boxes(&shot, file, 3, "Chromium");
        let chart = series_pixels(&shot, (0, 2, 12, 6));
        assert!(chart > 100, "{stem}: Chromium drew {chart} series pixels");
    }
    let empty = series_pixels(
        &screenshot(
            &chromium,
            &out.path().join("sidecar.html"),
            image.width,
            image.height,
        ),
        (0, 8, 8, 6),
    );
    assert!(empty < 20, "Chromium: retries has {empty} series pixels");
    drop(moto);
}
