//! The offline preview end to end on the repository's dashboards.

use super::*;

fn inputs() -> Inputs {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    Inputs {
        dashboards: root.join("dashboards"),
        alerts: root.join("alerts"),
        env: Some("dev".into()),
        vars: Some(root.join("provision/dev.json")),
        overrides: vec!["AccountId=123456789012".into()],
    }
}

#[test]
fn parse_since_reads_units() {
    use crate::provision::parse_since;
    assert_eq!(parse_since("3h"), Ok(3 * 3600));
    assert_eq!(parse_since("90m"), Ok(5400));
    assert_eq!(parse_since("600"), Ok(600));
    assert!(parse_since("3w").is_err());
    assert!(parse_since("10s").is_err());
}

#[test]
fn every_widget_of_the_repositorys_dashboards_is_drawn_in_its_box() {
    let definitions = crate::provision::load(&inputs()).expect("valid");
    for dashboard in &definitions.dashboards {
        let widgets = model::widgets(&dashboard.body).expect("widgets");
        let svg = dashboard_svg(
            &dashboard.name,
            "",
            &widgets,
            &DashboardData::offline(widgets.len()),
        );
        for (i, widget) in widgets.iter().enumerate() {
            let (x, y, w, h) = widget_box(widget.x, widget.y, widget.width, widget.height);
            let [r, g, b] = border_color(i);
            let rect = format!(
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#{r:02x}{g:02x}{b:02x}\"/>",
                svg::num(x),
                svg::num(y),
                svg::num(w),
                svg::num(h)
            );
            assert!(
                svg.contains(&rect),
                "{}: widget {i}: {rect}",
                dashboard.name
            );
            if !widget.title.is_empty() {
                assert!(svg.contains(&svg::escape(&svg::fit(
                    &widget.title,
                    13.0,
                    w - 20.0,
                    false
                ))));
            }
        }
        assert!(!svg.contains("${"), "placeholders are filled");
    }
}
