//! A small SVG writer: the few elements the preview draws, with numbers written at a fixed
//! precision (so the same input gives the same bytes) and text escaped.

use std::fmt::Write;

/// Sans-serif text (DejaVu Sans where installed: the PNG and Chromium then agree).
pub(super) const SANS: &str = "DejaVu Sans, Verdana, sans-serif";
/// Monospaced text (queries, inline code).
pub(super) const MONO: &str = "DejaVu Sans Mono, monospace";

/// Average advance of a DejaVu Sans glyph in ems: enough to wrap and truncate text.
const SANS_EM: f64 = 0.58;
/// Advance of a DejaVu Sans Mono glyph in ems.
const MONO_EM: f64 = 0.602;

/// The approximate width of `text` at `size` pixels.
pub(super) fn text_width(text: &str, size: f64, mono: bool) -> f64 {
    let em = if mono { MONO_EM } else { SANS_EM };
    text.chars().count() as f64 * size * em
}

/// `text` cut (with an ellipsis) to fit `width` pixels at `size`.
pub(super) fn fit(text: &str, size: f64, width: f64, mono: bool) -> String {
    if text_width(text, size, mono) <= width {
        return text.to_owned();
    }
    let em = if mono { MONO_EM } else { SANS_EM };
    let keep = ((width / (size * em)).floor() as usize).saturating_sub(1);
    let mut out: String = text.chars().take(keep).collect();
    out.push('…');
    out
}

/// `text` broken into lines of at most `width` pixels at `size` (long words are cut).
pub(super) fn wrap(text: &str, size: f64, width: f64, mono: bool) -> Vec<String> {
    let em = if mono { MONO_EM } else { SANS_EM };
    let max = ((width / (size * em)).floor() as usize).max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_owned();
        loop {
            let needed =
                line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
            if needed <= max {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than the line: cut it.
            let head: String = word.chars().take(max).collect();
            word = word.chars().skip(max).collect();
            lines.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// XML-escapes text and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A number with at most two decimals, no trailing zeros.
pub(super) fn num(value: f64) -> String {
    if !value.is_finite() {
        return "0".to_owned();
    }
    let rounded = (value * 100.0).round() / 100.0;
    let mut text = format!("{rounded:.2}");
    while text.ends_with('0') {
        text.pop();
    }
    if text.ends_with('.') {
        text.pop();
    }
    if text == "-0" { "0".to_owned() } else { text }
}

/// Text style.
#[derive(Debug, Clone, Copy)]
pub(super) struct Font {
    pub(super) size: f64,
    pub(super) bold: bool,
    pub(super) mono: bool,
    pub(super) color: &'static str,
}

impl Font {
    pub(super) const fn sans(size: f64, color: &'static str) -> Self {
        Self {
            size,
            bold: false,
            mono: false,
            color,
        }
    }

    pub(super) const fn bold(self) -> Self {
        Self { bold: true, ..self }
    }

    pub(super) const fn mono(self) -> Self {
        Self { mono: true, ..self }
    }
}

/// Horizontal anchor of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Anchor {
    Start,
    Middle,
    End,
}

/// An SVG document being written.
#[derive(Debug, Default)]
pub(super) struct Svg {
    out: String,
}

impl Svg {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// The finished document of `width` × `height` pixels.
    pub(super) fn finish(self, width: f64, height: f64) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\">\n<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" \
             fill=\"#f2f3f3\"/>\n{body}</svg>\n",
            w = num(width),
            h = num(height),
            body = self.out
        )
    }

    /// Raw markup (already escaped).
    pub(super) fn raw(&mut self, markup: &str) {
        self.out.push_str(markup);
    }

    pub(super) fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str) {
        let _ = writeln!(
            self.out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0)),
            escape(fill)
        );
    }

    pub(super) fn rounded(&mut self, x: f64, y: f64, w: f64, h: f64, r: f64, fill: &str) {
        let _ = writeln!(
            self.out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"{}\" fill=\"{}\"/>",
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0)),
            num(r),
            escape(fill)
        );
    }

    pub(super) fn line(&mut self, from: (f64, f64), to: (f64, f64), stroke: &str, dashed: bool) {
        let _ = writeln!(
            self.out,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"1\"{}/>",
            num(from.0),
            num(from.1),
            num(to.0),
            num(to.1),
            escape(stroke),
            if dashed {
                " stroke-dasharray=\"4 3\""
            } else {
                ""
            }
        );
    }

    pub(super) fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64) {
        let mut list = String::new();
        for (i, (x, y)) in points.iter().enumerate() {
            if i > 0 {
                list.push(' ');
            }
            let _ = write!(list, "{},{}", num(*x), num(*y));
        }
        let _ = writeln!(
            self.out,
            "<polyline points=\"{list}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" \
             stroke-linejoin=\"round\"/>",
            escape(stroke),
            num(width)
        );
    }

    /// A closed filled shape.
    pub(super) fn polygon(&mut self, points: &[(f64, f64)], fill: &str, opacity: f64) {
        let mut list = String::new();
        for (i, (x, y)) in points.iter().enumerate() {
            if i > 0 {
                list.push(' ');
            }
            let _ = write!(list, "{},{}", num(*x), num(*y));
        }
        let _ = writeln!(
            self.out,
            "<polygon points=\"{list}\" fill=\"{}\" fill-opacity=\"{}\"/>",
            escape(fill),
            num(opacity)
        );
    }

    pub(super) fn circle(&mut self, center: (f64, f64), r: f64, fill: &str) {
        let _ = writeln!(
            self.out,
            "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{}\"/>",
            num(center.0),
            num(center.1),
            num(r),
            escape(fill)
        );
    }

    /// A path (`d` is built by the caller from [`num`]s).
    pub(super) fn path(&mut self, d: &str, fill: &str, stroke: Option<(&str, f64)>) {
        let stroke = stroke.map_or_else(String::new, |(color, width)| {
            format!(
                " stroke=\"{}\" stroke-width=\"{}\"",
                escape(color),
                num(width)
            )
        });
        let _ = writeln!(
            self.out,
            "<path d=\"{d}\" fill=\"{}\"{stroke}/>",
            escape(fill)
        );
    }

    /// One line of text with its baseline at `y`.
    pub(super) fn text(&mut self, x: f64, y: f64, text: &str, font: Font, anchor: Anchor) {
        self.spans(x, y, &[(text.to_owned(), font, None)], anchor);
    }

    /// One line of differently styled runs (an optional link per run).
    pub(super) fn spans(
        &mut self,
        x: f64,
        y: f64,
        runs: &[(String, Font, Option<String>)],
        anchor: Anchor,
    ) {
        let Some((_, first, _)) = runs.first() else {
            return;
        };
        let anchor = match anchor {
            Anchor::Start => "",
            Anchor::Middle => " text-anchor=\"middle\"",
            Anchor::End => " text-anchor=\"end\"",
        };
        let _ = write!(
            self.out,
            "<text x=\"{}\" y=\"{}\" font-family=\"{}\" font-size=\"{}\" fill=\"{}\"{anchor} \
             xml:space=\"preserve\">",
            num(x),
            num(y),
            if first.mono { MONO } else { SANS },
            num(first.size),
            first.color
        );
        for (text, font, link) in runs {
            let mut attributes = String::new();
            if font.mono != first.mono {
                let _ = write!(
                    attributes,
                    " font-family=\"{}\"",
                    if font.mono { MONO } else { SANS }
                );
            }
            if font.size != first.size {
                let _ = write!(attributes, " font-size=\"{}\"", num(font.size));
            }
            if font.bold {
                attributes.push_str(" font-weight=\"bold\"");
            }
            if font.color != first.color {
                let _ = write!(attributes, " fill=\"{}\"", font.color);
            }
            if link.is_some() {
                attributes.push_str(" text-decoration=\"underline\"");
            }
            let span = if attributes.is_empty() {
                escape(text)
            } else {
                format!("<tspan{attributes}>{}</tspan>", escape(text))
            };
            match link {
                Some(href) => {
                    let _ = write!(self.out, "<a href=\"{}\">{span}</a>", escape(href));
                }
                None => self.out.push_str(&span),
            }
        }
        self.out.push_str("</text>\n");
    }

    /// Starts a group clipped to a rectangle (ends with [`Svg::end_group`]).
    pub(super) fn clipped(&mut self, id: &str, x: f64, y: f64, w: f64, h: f64) {
        let _ = writeln!(
            self.out,
            "<clipPath id=\"{id}\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></clipPath>\
             <g clip-path=\"url(#{id})\">",
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0))
        );
    }

    pub(super) fn end_group(&mut self) {
        self.out.push_str("</g>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_stable() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(1.005_1), "1.01");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "0");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_cuts_long_words() {
        let lines = wrap("aaa bbb ccc", 10.0, 10.0 * SANS_EM * 7.0, false);
        assert_eq!(lines, ["aaa bbb", "ccc"]);
        let lines = wrap("abcdefghij", 10.0, 10.0 * SANS_EM * 4.0, false);
        assert_eq!(lines, ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
