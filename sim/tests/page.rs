//! `index.html`: each run written with `--out` gets one page with its table and every plot inlined.

use std::path::PathBuf;
use std::time::Duration;
use tollgate_sim::scenario::Scenario;
use tollgate_sim::strategy::StrategyKind;
use tollgate_sim::{cli, simulate};

#[test]
fn index_html_shows_the_table_and_inlines_every_svg_plot() {
    let mut s = Scenario::built_in("reference").unwrap();
    s.duration = Duration::from_secs(120);
    let kinds = [StrategyKind::Tollgate, StrategyKind::None];
    let report = simulate(&s, &kinds, &[0.8, 1.0]).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("page");
    let files = cli::write_outputs(&report, &dir).unwrap();
    assert!(files.contains(&dir.join("index.html")));
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<pre>scenario reference:"), "the table");
    for k in kinds {
        assert!(page.contains(k.name()), "{}", k.name());
    }
    // Every SVG plot, whole, in the page; nothing else to load, nothing to run.
    let svgs: Vec<_> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "svg"))
        .collect();
    assert_eq!(svgs.len(), 4);
    assert_eq!(page.matches("<svg").count(), svgs.len());
    for svg in svgs {
        let text = std::fs::read_to_string(svg).unwrap();
        assert!(page.contains(text.trim()), "{svg:?} not inlined");
    }
    assert!(!page.contains("<script"));
    assert!(!page.contains(".png"));
}
