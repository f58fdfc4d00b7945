//! `index.html`: a run's report as one page a person opens from disk: the scenario, the table and
//! every plot, the SVGs inlined (no JavaScript, no other file needed).

use crate::report::Report;
use std::fmt::Write as _;

/// `text` with `&`, `<`, `>` and `"` escaped for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The page of `report`, with `plots` (each plot's name and its SVG document) inlined in order.
pub fn index_html(report: &Report, plots: &[(String, String)]) -> String {
    let s = &report.scenario;
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>sim: {name}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em auto; max-width: 1250px; padding: 0 1em; }}\n\
         pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}\n\
         svg {{ max-width: 100%; height: auto; }}\n</style>\n</head>\n<body>\n\
         <h1>Scenario <code>{name}</code></h1>\n<p>{description}</p>\n",
        name = escape(&s.name),
        description = escape(&s.description),
    );
    let _ = write!(
        page,
        "<h2>Results</h2>\n<pre>{}</pre>\n<p>Metrics as the README defines them: 429rate = 429s ÷ \
         attempts, util = successes ÷ what the provider would have admitted while demand waited, \
         overthr = capacity left unused while calls were held back (up to the calls held), waits \
         in seconds.</p>\n",
        escape(&report.table())
    );
    for (name, svg) in plots {
        // The SVG document without an XML declaration, if it has one.
        let body = svg
            .trim_start()
            .strip_prefix("<?xml")
            .and_then(|rest| rest.split_once("?>"))
            .map_or(svg.as_str(), |(_, rest)| rest);
        let _ = write!(
            page,
            "<h2>{}</h2>\n<div class=\"plot\">\n{}\n</div>\n",
            escape(name),
            body.trim()
        );
    }
    page.push_str("</body>\n</html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("a < b & \"c\" > d"),
            "a &lt; b &amp; &quot;c&quot; &gt; d"
        );
    }
}
