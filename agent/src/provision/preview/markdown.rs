//! The Markdown subset text widgets use, laid out as SVG text lines: headings, paragraphs,
//! `**bold**`, `*italic*` (drawn plain), `` `code` ``, `[links](url)`, `-`/`*`/`1.` lists,
//! pipe tables and `---` rules. Anything else is drawn as the text it is.

use super::svg::{Anchor, Font, Svg, fit, text_width};

const BODY_SIZE: f64 = 12.0;
const TEXT: &str = "#16191f";
const LINK: &str = "#0972d3";
const CODE: &str = "#5f6b7a";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Style {
    bold: bool,
    code: bool,
}

/// A run of text in one style, maybe a link.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    text: String,
    style: Style,
    link: Option<String>,
}

/// Inline Markdown → runs.
fn inline(text: &str) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut style = Style::default();
    let mut buffer = String::new();
    let flush = |buffer: &mut String, runs: &mut Vec<Run>, style: Style| {
        if !buffer.is_empty() {
            runs.push(Run {
                text: std::mem::take(buffer),
                style,
                link: None,
            });
        }
    };
    let mut rest = text;
    let mut emphasis: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("**") {
            flush(&mut buffer, &mut runs, style);
            style.bold = !style.bold;
            rest = after;
        } else if c == '`' {
            flush(&mut buffer, &mut runs, style);
            let after = &rest[1..];
            match after.find('`') {
                Some(end) => {
                    runs.push(Run {
                        text: after[..end].to_owned(),
                        style: Style {
                            code: true,
                            ..style
                        },
                        link: None,
                    });
                    rest = &after[end + 1..];
                }
                None => {
                    buffer.push('`');
                    rest = after;
                }
            }
        } else if c == '[' {
            let link = rest[1..].find("](").and_then(|close| {
                let label = &rest[1..1 + close];
                let target = &rest[1 + close + 2..];
                target
                    .find(')')
                    .map(|end| (label, &target[..end], &target[end + 1..]))
            });
            match link {
                Some((label, url, after)) => {
                    flush(&mut buffer, &mut runs, style);
                    runs.push(Run {
                        text: label.to_owned(),
                        style,
                        link: Some(url.to_owned()),
                    });
                    rest = after;
                }
                None => {
                    buffer.push('[');
                    rest = &rest[1..];
                }
            }
        } else if emphasis == Some(c) {
            emphasis = None;
            rest = &rest[1..];
        } else if (c == '*' || c == '_')
            && emphasis.is_none()
            && rest[1..].starts_with(|n: char| !n.is_whitespace())
            && rest[1..].contains(c)
        {
            // Emphasis: drawn plain (the markers are dropped).
            emphasis = Some(c);
            rest = &rest[1..];
        } else {
            buffer.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    flush(&mut buffer, &mut runs, style);
    runs
}

/// A block of a text widget.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Heading(usize, Vec<Run>),
    Paragraph(Vec<Run>),
    Item(String, Vec<Run>),
    Table(Vec<Vec<Vec<Run>>>),
    Rule,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut paragraph = String::new();
    let mut table: Vec<Vec<Vec<Run>>> = Vec::new();
    let end_paragraph = |paragraph: &mut String, blocks: &mut Vec<Block>| {
        if !paragraph.trim().is_empty() {
            blocks.push(Block::Paragraph(inline(paragraph.trim())));
        }
        paragraph.clear();
    };
    for line in markdown.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('|') {
            end_paragraph(&mut paragraph, &mut blocks);
            let cells: Vec<&str> = trimmed
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let separator = cells
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')));
            if !separator {
                table.push(cells.into_iter().map(inline).collect());
            }
            continue;
        }
        if !table.is_empty() {
            blocks.push(Block::Table(std::mem::take(&mut table)));
        }
        if trimmed.is_empty() {
            end_paragraph(&mut paragraph, &mut blocks);
        } else if let Some(level) = heading_level(trimmed) {
            end_paragraph(&mut paragraph, &mut blocks);
            blocks.push(Block::Heading(level, inline(trimmed[level..].trim_start())));
        } else if trimmed.chars().all(|c| c == '-' || c == '*') && trimmed.len() >= 3 {
            end_paragraph(&mut paragraph, &mut blocks);
            blocks.push(Block::Rule);
        } else if let Some(item) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
        {
            end_paragraph(&mut paragraph, &mut blocks);
            blocks.push(Block::Item("•".to_owned(), inline(item)));
        } else if let Some((number, item)) = trimmed
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.len() <= 3 && n.chars().all(|c| c.is_ascii_digit()))
        {
            end_paragraph(&mut paragraph, &mut blocks);
            blocks.push(Block::Item(format!("{number}."), inline(item)));
        } else {
            if !paragraph.is_empty() {
                paragraph.push(' ');
            }
            paragraph.push_str(trimmed);
        }
    }
    if !table.is_empty() {
        blocks.push(Block::Table(table));
    }
    end_paragraph(&mut paragraph, &mut blocks);
    blocks
}

fn heading_level(line: &str) -> Option<usize> {
    let level = line.chars().take_while(|c| *c == '#').count();
    ((1..=6).contains(&level) && line[level..].starts_with(' ')).then_some(level)
}

fn font(style: Style, size: f64, bold: bool, link: bool) -> Font {
    let color = if link {
        LINK
    } else if style.code {
        CODE
    } else {
        TEXT
    };
    let mut font = Font::sans(size, color);
    if style.bold || bold {
        font = font.bold();
    }
    if style.code {
        font = font.mono();
    }
    font
}

/// One laid-out line: (text, font, link) runs.
type Line = Vec<(String, Font, Option<String>)>;

/// Greedy word wrap of styled runs into lines of at most `width` pixels.
fn wrap_runs(runs: &[Run], size: f64, bold: bool, width: f64) -> Vec<Line> {
    let mut lines: Vec<Line> = vec![Vec::new()];
    let mut used = 0.0;
    for run in runs {
        let font = font(run.style, size, bold, run.link.is_some());
        // Split keeping the spaces with the word before them.
        for word in run.text.split_inclusive(' ') {
            let w = text_width(word, size, font.mono) * if font.bold { 1.1 } else { 1.0 };
            if used + w > width && used > 0.0 {
                lines.push(Vec::new());
                used = 0.0;
            }
            let line: &mut Line = lines.last_mut().expect("a line");
            match line.last_mut() {
                Some((text, f, link))
                    if f.bold == font.bold && f.mono == font.mono && *link == run.link =>
                {
                    text.push_str(word);
                }
                _ => line.push((word.to_owned(), font, run.link.clone())),
            }
            used += w;
        }
    }
    lines
}

/// Draws `markdown` into the box at (`x`, `y`) of `width` × `height` pixels; what does not
/// fit is cut.
pub(super) fn draw(svg: &mut Svg, markdown: &str, x: f64, y: f64, width: f64, height: f64) {
    let bottom = y + height;
    let mut cursor = y;
    for block in blocks(markdown) {
        let (runs, size, bold, indent, marker) = match &block {
            Block::Heading(level, runs) => {
                let size = match level {
                    1 => 17.0,
                    2 => 15.0,
                    _ => 13.0,
                };
                (runs.as_slice(), size, true, 0.0, None)
            }
            Block::Paragraph(runs) => (runs.as_slice(), BODY_SIZE, false, 0.0, None),
            Block::Item(marker, runs) => (runs.as_slice(), BODY_SIZE, false, 16.0, Some(marker)),
            Block::Rule => {
                if cursor + 8.0 > bottom {
                    return;
                }
                svg.rect(x, cursor + 4.0, width, 1.0, "#d1d5db");
                cursor += 9.0;
                continue;
            }
            Block::Table(rows) => {
                cursor = table(svg, rows, x, cursor, width, bottom);
                continue;
            }
        };
        let line_height = size * 1.35;
        for (i, line) in wrap_runs(runs, size, bold, width - indent)
            .into_iter()
            .enumerate()
        {
            if cursor + line_height > bottom {
                return;
            }
            if i == 0
                && let Some(marker) = marker
            {
                svg.text(
                    x + 4.0,
                    cursor + size,
                    marker,
                    Font::sans(size, TEXT),
                    Anchor::Start,
                );
            }
            svg.spans(x + indent, cursor + size, &line, Anchor::Start);
            cursor += line_height;
        }
        cursor += size * 0.35;
    }
}

fn table(svg: &mut Svg, rows: &[Vec<Vec<Run>>], x: f64, y: f64, width: f64, bottom: f64) -> f64 {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let cell = width / columns as f64;
    let line_height = BODY_SIZE * 1.6;
    let mut cursor = y;
    for (r, row) in rows.iter().enumerate() {
        if cursor + line_height > bottom {
            break;
        }
        if r == 0 {
            svg.rect(x, cursor, width, line_height, "#f2f3f3");
        }
        svg.rect(x, cursor + line_height - 1.0, width, 1.0, "#d1d5db");
        for (c, runs) in row.iter().enumerate() {
            let text: String = runs.iter().map(|r| r.text.as_str()).collect();
            let bold = r == 0 || runs.iter().any(|r| r.style.bold);
            let mut font = Font::sans(BODY_SIZE, TEXT);
            if bold {
                font = font.bold();
            }
            svg.text(
                x + c as f64 * cell + 4.0,
                cursor + BODY_SIZE * 1.15,
                &fit(&text, BODY_SIZE, cell - 8.0, false),
                font,
                Anchor::Start,
            );
        }
        cursor += line_height;
    }
    cursor + BODY_SIZE * 0.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(runs: &[Run]) -> Vec<(&str, bool, bool, Option<&str>)> {
        runs.iter()
            .map(|r| {
                (
                    r.text.as_str(),
                    r.style.bold,
                    r.style.code,
                    r.link.as_deref(),
                )
            })
            .collect()
    }

    #[test]
    fn inline_bold_code_and_links() {
        let runs = inline("a **b** `c` [d](https://e) *f*");
        assert_eq!(
            plain(&runs),
            [
                ("a ", false, false, None),
                ("b", true, false, None),
                (" ", false, false, None),
                ("c", false, true, None),
                (" ", false, false, None),
                ("d", false, false, Some("https://e")),
                (" f", false, false, None),
            ]
        );
    }

    #[test]
    fn blocks_headings_lists_tables() {
        let blocks = blocks(
            "# Title\nline one\nline two\n\n- a\n1. b\n\n| h1 | h2 |\n|---|---|\n| x | y |\n---",
        );
        assert!(matches!(&blocks[0], Block::Heading(1, runs) if runs[0].text == "Title"));
        assert!(
            matches!(&blocks[1], Block::Paragraph(runs) if runs[0].text == "line one line two")
        );
        assert!(matches!(&blocks[2], Block::Item(m, _) if m == "•"));
        assert!(matches!(&blocks[3], Block::Item(m, _) if m == "1."));
        assert!(matches!(&blocks[4], Block::Table(rows) if rows.len() == 2));
        assert_eq!(blocks[5], Block::Rule);
    }
}
