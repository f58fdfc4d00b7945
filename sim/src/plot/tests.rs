//! Every plot drawn from a synthetic report: the files, their bytes, and what they show.

use super::*;
use crate::report::{Slot, SweepPoint, Timeline};
use crate::scenario::Scenario;

/// Three strategies over 900 s, plausible curves, and a five-point sweep.
fn synthetic_report() -> Report {
    let mut scenario = Scenario::built_in("reference").expect("reference scenario");
    scenario.name = "synthetic".into();
    let limit = 50.0;
    let strategies = ["no-throttle", "token-bucket", "tollgate"];
    let timelines = strategies
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let slots = (0..900u64)
                .map(|t| {
                    let spike = (240..300).contains(&t);
                    // Demand of ~75/min, doubled in the spike; deterministic "noise".
                    let wave = (t * 7 + k as u64 * 13) % 11;
                    let sent = if t < 600 {
                        1 + u64::from(wave < 3) + u64::from(spike)
                    } else {
                        u64::from(wave < 2)
                    };
                    let (ok, rl) = match k {
                        0 => (sent.min(1), sent.saturating_sub(1)),
                        1 => (u64::from(wave < 8), u64::from(wave == 9 && spike)),
                        _ => (u64::from(wave < 9), 0),
                    };
                    let queue = if t < 600 {
                        (t % 300) / (5 + 5 * k as u64)
                    } else {
                        0
                    };
                    Slot {
                        t,
                        sent,
                        ok,
                        rate_limited: rl,
                        overloaded: 0,
                        tokens_ok: ok * 1500,
                        queue_depth: queue,
                    }
                })
                .collect();
            Timeline {
                strategy: (*name).into(),
                slots,
            }
        })
        .collect();
    let sweep = ["token-bucket", "tollgate"]
        .iter()
        .enumerate()
        .flat_map(|(k, name)| {
            [0.6, 0.7, 0.8, 0.9, 1.0]
                .into_iter()
                .map(move |h: f64| SweepPoint {
                    strategy: (*name).into(),
                    headroom: h,
                    over_throttling: (1.0 - h) * (0.9 - 0.3 * k as f64) + 0.02,
                    rate_limited_rate: (h - 0.55).max(0.0) * (0.3 - 0.15 * k as f64),
                    utilization: h,
                })
        })
        .collect();
    Report {
        scenario,
        results: Vec::new(),
        timelines,
        sweep,
        limit_rpm: limit,
        effective_rpm: 40.0,
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tollgate-plot-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn writes_every_plot_as_png_and_svg() {
    let dir = temp_dir("all");
    let files = write_plots(&synthetic_report(), &dir).expect("plots");
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "frontier.png",
            "frontier.svg",
            "queue_depth.png",
            "queue_depth.svg",
            "rate_limited.png",
            "rate_limited.svg",
            "throughput.png",
            "throughput.svg",
        ]
    );
    for f in &files {
        let bytes = std::fs::read(f).expect("read");
        assert!(bytes.len() > 1000, "{} is too small", f.display());
        if f.extension().is_some_and(|e| e == "png") {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", f.display());
        }
    }
    let svg = std::fs::read_to_string(dir.join("throughput.svg")).expect("svg");
    assert!(svg.contains("Throughput — synthetic"));
    assert!(svg.contains("provider limit"));
    assert!(svg.contains("real capacity"));
    assert!(svg.contains("tollgate"));
    let svg = std::fs::read_to_string(dir.join("frontier.svg")).expect("svg");
    assert!(svg.contains("Over-throttling vs 429 rate"));
    assert!(svg.contains("h=0.9"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn same_report_gives_identical_bytes() {
    let report = synthetic_report();
    let (a, b) = (temp_dir("det-a"), temp_dir("det-b"));
    let fa = write_plots(&report, &a).expect("plots a");
    let fb = write_plots(&report, &b).expect("plots b");
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.file_name(), y.file_name());
        let (bx, by) = (std::fs::read(x).expect("a"), std::fs::read(y).expect("b"));
        assert!(bx == by, "{} differs between runs", x.display());
    }
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn no_sweep_no_frontier_and_empty_report_draws() {
    let mut report = synthetic_report();
    report.sweep.clear();
    let dir = temp_dir("nosweep");
    let files = write_plots(&report, &dir).expect("plots");
    assert_eq!(files.len(), 6);
    assert!(!dir.join("frontier.png").exists());
    report.timelines.clear();
    report.limit_rpm = 0.0;
    let files = write_plots(&report, &dir).expect("empty plots");
    assert_eq!(files.len(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_that_cannot_be_created_is_an_error() {
    let file = temp_dir("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let err = write_plots(&synthetic_report(), &file.join("sub")).expect_err("must fail");
    assert!(err.to_string().contains("cannot create"), "{err}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn coincident_sweep_points_share_one_label() {
    let mut report = synthetic_report();
    let point = |strategy: &str, headroom: f64| SweepPoint {
        strategy: strategy.into(),
        headroom,
        over_throttling: 0.0,
        rate_limited_rate: 0.0,
        utilization: 1.0,
    };
    report.sweep = vec![
        point("a", 0.8),
        point("a", 0.9),
        point("b", 0.9),
        point("b", 1.0),
    ];
    let dir = temp_dir("coincident");
    write_plots(&report, &dir).expect("plots");
    let svg = std::fs::read_to_string(dir.join("frontier.svg")).expect("svg");
    assert_eq!(svg.matches("h=0.8, 0.9, 1").count(), 1, "{svg}");
    assert!(!svg.contains(">\nh=0.9\n<"));
    let _ = std::fs::remove_dir_all(&dir);
}
