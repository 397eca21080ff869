//! `fnas report`: the page is written, opened in headless Chromium (Debian's `chromium`,
//! installed by scripts/setup.sh), rendered with its charts, without console errors.

use std::process::Command;

use crate::common::*;

fn search(store: &str, strategy: &str, seed: &str) {
    let o = run(&[
        "search",
        "--task",
        "nas-bench-graph/cora",
        "--strategy",
        strategy,
        "--budget",
        "60",
        "--seed",
        seed,
        "--store",
        store,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_report_renders_in_chromium_with_its_charts() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("r.db");
    let s = store.to_str().unwrap();
    for seed in ["1", "2"] {
        search(s, "evolution", seed);
    }
    search(s, "fnas", "1");
    let out = tmp.path().join("report.html");
    let o = run(&["report", "--store", s, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    for fetch in [
        "<script",
        "<link",
        "@import",
        "src=\"http",
        "href=\"http",
        "url(http",
    ] {
        assert!(
            !html.contains(fetch),
            "self-contained: `{fetch}` in the page"
        );
    }
    let url = format!("file://{}", out.display());
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1200,2400",
            ])
            .args(["--enable-logging=stderr", "--v=0"])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap_or_else(|e| {
                panic!("chromium for the report test: {e} (scripts/setup.sh installs it)")
            })
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.status.success());
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    for id in [
        "chart-best",
        "chart-pareto",
        "chart-critic",
        "chart-batches",
    ] {
        let at = dom_text
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id} missing from the rendered page"));
        let rest = &dom_text[at..];
        let svg = rest.find("<svg").expect("an svg element");
        let end = rest.find("</svg>").expect("a closed svg element");
        let body = &rest[svg..end];
        assert!(
            body.matches("<polyline").count()
                + body.matches("<circle").count()
                + body.matches("<rect").count()
                > 3,
            "{id}: the chart is empty"
        );
    }
    // the architectures of the top trials and the export command
    assert!(dom_text.contains("fnas export"), "no export command");
    let console = String::from_utf8_lossy(&dom.stderr);
    assert!(
        !console.contains(":CONSOLE(") && !console.contains("Uncaught"),
        "console messages: {console}"
    );
    let shot = tmp.path().join("report.png");
    let o = chromium(&[&format!("--screenshot={}", shot.display())]);
    assert!(o.status.success());
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn report_bad_input_is_a_one_line_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("r.db");
    let s = store.to_str().unwrap();
    search(s, "random", "1");
    let out = tmp.path().join("x.html");
    let o = run(&[
        "report",
        "nope",
        "--store",
        s,
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("no experiment `nope`"),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(!out.exists());
    let missing = tmp.path().join("missing.db");
    let o = run(&[
        "report",
        "--store",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(!out.exists() && !missing.exists());
    let o = run(&["report", "--store", s, "--out", "/proc/no/such/dir/r.html"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("cannot write"), "{e}");
}

/// `fnas bench --json` output is a report input too.
#[test]
fn bench_results_make_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("b.json");
    let o = run(&[
        "bench",
        "--benchmark",
        "nas-bench-graph",
        "--datasets",
        "cora",
        "--strategies",
        "evolution,random",
        "--seeds",
        "3",
        "--budget",
        "60",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = tmp.path().join("bench.html");
    let o = run(&[
        "report",
        "--bench",
        json.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("nas-bench-graph/cora") && html.contains("<svg"));
    assert!(html.contains(">evolution<") && html.contains(">random<"));
    // not a bench file: a one-line error naming it, nothing written
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"x\": 1}").unwrap();
    let out2 = tmp.path().join("bad.html");
    let o = run(&[
        "report",
        "--bench",
        bad.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("bad.json") && e.contains("fnas bench --json"),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(!out2.exists());
}
