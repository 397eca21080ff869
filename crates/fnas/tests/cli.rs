//! End-to-end tests of the `fnas` binary as a user runs it, on the real benchmark data
//! (installed by scripts/setup.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn fnas() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fnas"))
}

fn data_dir() -> PathBuf {
    let d = fnas_bench::resolve_data_dir(None);
    assert!(
        d.join("nas-bench-graph/light/cora.bench").exists(),
        "benchmark data missing in {}: run scripts/setup.sh",
        d.display()
    );
    d
}

fn run(args: &[&str]) -> Output {
    fnas().args(args).output().expect("fnas binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A user-facing failure: non-zero exit, one line starting `error:`, no panic.
fn assert_clean_error(o: &Output, needle: &str) {
    let e = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {e}"
    );
    assert!(!e.contains("panicked"), "panic: {e}");
    assert!(e.trim_end().lines().count() == 1, "not one line: {e}");
    assert!(e.starts_with("error:"), "{e}");
    assert!(e.contains(needle), "`{needle}` not in: {e}");
}

fn show_json(store: &Path, name: &str) -> serde_json::Value {
    let o = run(&["show", name, "--store", store.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "show failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("show --json prints JSON")
}

fn search_args<'a>(
    store: &'a str,
    strategy: &'a str,
    budget: &'a str,
    data: &'a str,
) -> Vec<&'a str> {
    vec![
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--strategy",
        strategy,
        "--budget",
        budget,
        "--seed",
        "5",
        "--store",
        store,
        "--name",
        "exp",
        "--data-dir",
        data,
        "--json",
    ]
}

fn total_cost(v: &serde_json::Value) -> u64 {
    v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["cost"]["evaluations"].as_u64().unwrap())
        .sum()
}

fn arch_sequence(v: &serde_json::Value) -> Vec<String> {
    v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["arch"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn search_then_ls_and_show() {
    let data = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let o = run(&search_args(s, "evolution", "60", data.to_str().unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["cost"], 60);
    let v = show_json(&store, "exp");
    let trials = v["trials"].as_array().unwrap();
    let mut ids: Vec<i64> = trials.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), trials.len(), "ids unique");
    for t in trials {
        assert_eq!(t["status"], "done");
        assert!(t["metrics"]["val_accuracy"].as_f64().unwrap() > 0.0);
        assert!(t["reward"].as_f64().is_some());
    }
    let cost: u64 = trials
        .iter()
        .map(|t| t["cost"]["evaluations"].as_u64().unwrap())
        .sum();
    assert_eq!(cost, 60);
    let ls = run(&["ls", "--store", s]);
    assert!(String::from_utf8_lossy(&ls.stdout).contains("exp"));
    // a second start of the same name is refused, the store untouched
    let before = std::fs::read(&store).unwrap().len();
    let o = run(&search_args(s, "evolution", "60", data.to_str().unwrap()));
    assert_clean_error(&o, "already exists");
    assert_eq!(
        show_json(&store, "exp")["trials"].as_array().unwrap().len(),
        trials.len()
    );
    assert!(std::fs::read(&store).unwrap().len() >= before);
}

/// SIGKILL at random moments, then --resume: same trials as an uninterrupted run, none
/// twice, the budget spent exactly.
fn kill_and_resume(strategy: &str, budget: &str) {
    let data = data_dir();
    let d = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole.db");
    let o = run(&search_args(whole.to_str().unwrap(), strategy, budget, d));
    assert!(o.status.success(), "{}", stderr(&o));
    let whole_run = show_json(&whole, "exp");
    let reference = arch_sequence(&whole_run);
    let reference_cost = total_cost(&whole_run);

    let store = tmp.path().join("killed.db");
    let s = store.to_str().unwrap();
    let mut kills = 0;
    let mut delay_ms = 40u64;
    for attempt in 0..40 {
        let mut args = search_args(s, strategy, budget, d);
        args.push("--resume");
        let mut child = fnas()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms + (attempt * 37 % 50)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        delay_ms += 15;
        // the kill may land before the experiment exists: then it is simply not started
        let o = run(&["show", "exp", "--store", s, "--json"]);
        if o.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            if v["experiment"]["status"] == "finished" {
                break;
            }
        }
    }
    assert!(
        kills >= 2,
        "the search finished before it could be killed twice"
    );
    let mut args = search_args(s, strategy, budget, d);
    args.push("--resume");
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = show_json(&store, "exp");
    assert_eq!(v["experiment"]["status"], "finished");
    let trials = v["trials"].as_array().unwrap();
    assert!(trials.iter().all(|t| t["status"] == "done"));
    assert_eq!(total_cost(&v), reference_cost);
    assert!(reference_cost <= budget.parse::<u64>().unwrap());
    assert_eq!(
        arch_sequence(&v),
        reference,
        "resumed run differs from an uninterrupted one"
    );
}

#[test]
fn sigkill_then_resume_random() {
    kill_and_resume("random", "400");
}

#[test]
fn sigkill_then_resume_ppo() {
    kill_and_resume("ppo", "200");
}

/// With stderr not a terminal (a log file) a search still reports progress, as plain
/// lines; with --json it stays quiet.
#[test]
fn search_logs_progress_lines_when_stderr_is_not_a_terminal() {
    let data = data_dir();
    let d = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("log.db");
    let s = store.to_str().unwrap();
    let mut args = search_args(s, "random", "30", d);
    args.retain(|a| *a != "--json");
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.lines()
            .any(|l| l.starts_with('[') && l.contains("30/30 random on nas-bench-graph/cora")),
        "no final progress line in: {e}"
    );
    let quiet = tmp.path().join("quiet.db");
    let o = run(&search_args(quiet.to_str().unwrap(), "random", "30", d));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("/30 "), "{}", stderr(&o));
}

/// A finished search resumed with a larger --budget continues where it stopped and ends
/// with the trials of a search started with that budget; the other budget flag is
/// refused with the store untouched.
#[test]
fn resume_with_larger_budget_extends_a_finished_search() {
    let data = data_dir();
    let d = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for strategy in ["ppo", "fnas"] {
        let whole = tmp.path().join(format!("{strategy}-whole.db"));
        let o = run(&search_args(whole.to_str().unwrap(), strategy, "96", d));
        assert!(o.status.success(), "{}", stderr(&o));
        let reference = show_json(&whole, "exp");

        let store = tmp.path().join(format!("{strategy}-extended.db"));
        let s = store.to_str().unwrap();
        let o = run(&search_args(s, strategy, "48", d));
        assert!(o.status.success(), "{}", stderr(&o));
        let short = show_json(&store, "exp");
        assert_eq!(short["experiment"]["status"], "finished");
        assert_eq!(total_cost(&short), 48);

        let mut args = search_args(s, strategy, "48", d);
        args.retain(|a| *a != "--json");
        args.extend(["--resume", "--budget-images", "1000"]);
        args.retain(|a| *a != "--budget" && *a != "48");
        assert_clean_error(&run(&args), "resume it with --budget");
        assert_eq!(
            show_json(&store, "exp"),
            short,
            "a refused resume changes nothing"
        );

        let mut args = search_args(s, strategy, "96", d);
        args.push("--resume");
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v = show_json(&store, "exp");
        assert_eq!(v["experiment"]["status"], "finished");
        assert_eq!(v["experiment"]["spec"]["budget"], 96);
        assert_eq!(total_cost(&v), total_cost(&reference));
        assert_eq!(
            arch_sequence(&v),
            arch_sequence(&reference),
            "{strategy}: the extended search differs from one started with the larger budget"
        );
    }
}

#[test]
fn bad_input_gets_one_line_errors() {
    let data = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let d = data.to_str().unwrap();

    let o = run(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--data-dir",
        "/nonexistent",
        "--store",
        s,
    ]);
    assert_clean_error(&o, "scripts/setup.sh");
    assert!(!store.exists(), "a failed start must not create a store");

    // truncated pickle
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(bad.join("nas-bench-graph/light")).unwrap();
    let bytes = std::fs::read(data.join("nas-bench-graph/light/cora.bench")).unwrap();
    std::fs::write(
        bad.join("nas-bench-graph/light/cora.bench"),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();
    let o = run(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--data-dir",
        bad.to_str().unwrap(),
        "--store",
        s,
    ]);
    assert_clean_error(&o, "cora.bench");

    let o = run(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "mnist",
        "--data-dir",
        d,
        "--store",
        s,
    ]);
    assert_clean_error(&o, "unknown dataset `mnist`");
    let o = run(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--strategy",
        "sa",
        "--store",
        s,
    ]);
    assert_clean_error(&o, "unknown strategy `sa`");
    let o = run(&[
        "search",
        "--benchmark",
        "nas-bench-999",
        "--dataset",
        "cora",
        "--store",
        s,
    ]);
    assert_clean_error(&o, "nas-bench-999");

    let toml = tmp.path().join("space.toml");
    std::fs::write(&toml, "name = \"x\"\n[input]\nchannels = \"one\"\n").unwrap();
    let o = run(&["space", "show", toml.to_str().unwrap()]);
    assert_clean_error(&o, "space.toml");

    let o = run(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--data-dir",
        d,
        "--store",
        "/nonexistent-dir/x.db",
    ]);
    assert_clean_error(&o, "/nonexistent-dir");

    // an existing store survives bad commands and stays readable
    let o = run(&search_args(s, "random", "20", d));
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(&store).unwrap();
    let o = run(&["show", "nope", "--store", s]);
    assert_clean_error(&o, "nope");
    let o = run(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--strategy",
        "sa",
        "--store",
        s,
        "--name",
        "exp",
    ]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&store).unwrap(), before);
    assert_eq!(
        show_json(&store, "exp")["trials"].as_array().unwrap().len(),
        20
    );

    let junk = tmp.path().join("junk.db");
    std::fs::write(
        &junk,
        b"this is not a database at all, not even close........",
    )
    .unwrap();
    let o = run(&["ls", "--store", junk.to_str().unwrap()]);
    assert!(
        !o.status.success() && !stderr(&o).contains("panicked"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn space_commands() {
    let o = run(&["space", "show", "nas-bench-graph"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("157440") && out.contains("26206"), "{out}");
    let o = run(&["space", "show", "mnas-28", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decisions"].as_array().unwrap().len(), 30);
    let a = run(&["space", "sample", "nas-bench-201", "--seed", "4"]);
    let b = run(&["space", "sample", "nas-bench-201", "--seed", "4"]);
    assert_eq!(a.stdout, b.stdout);
    assert!(String::from_utf8_lossy(&a.stdout).contains("e1_2="));
}

/// `--critic-min-points` lets the critic act before its default 32 points (a short
/// search would otherwise never use it); it is kept with the experiment, and a strategy
/// without a critic refuses it.
#[test]
fn critic_min_points_lets_the_critic_act_earlier() {
    let data = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let (s, d) = (store.to_str().unwrap(), data.to_str().unwrap());
    let named =
        |strategy: &'static str, budget: &'static str, name: &'static str, n: &'static str| {
            let mut args = search_args(s, strategy, budget, d);
            let i = args.iter().position(|a| *a == "exp").unwrap();
            args[i] = name;
            args.extend(["--critic-min-points", n]);
            args
        };
    let scored_batches = |name: &str| -> Vec<u64> {
        let v = show_json(&store, name);
        let mut b: Vec<u64> = v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| !t["prediction"].is_null())
            .map(|t| t["batch"].as_u64().unwrap())
            .collect();
        b.dedup();
        b
    };

    let o = run(&search_args(s, "fnas", "24", d));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        scored_batches("exp").is_empty(),
        "24 points are fewer than the default 32: the critic must not score"
    );
    let shown = show_json(&store, "exp").to_string();
    assert!(shown.contains("\"min_points\":32"), "{shown}");

    let o = run(&named("fnas", "24", "early", "8"));
    assert!(o.status.success(), "{}", stderr(&o));
    let scored = scored_batches("early");
    assert_eq!(
        scored.first(),
        Some(&1),
        "with 8 points the critic scores from the second batch on: {scored:?}"
    );
    // resumed from the store alone, the setting is the same (nothing left to do)
    let o = run(&[
        "search",
        "--store",
        s,
        "--name",
        "early",
        "--resume",
        "--data-dir",
        d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(scored_batches("early"), scored);

    assert_clean_error(
        &run(&named("ppo", "8", "nocritic", "8")),
        "needs a strategy with a critic",
    );
    let o = run(&named("fnas", "8", "zero", "0"));
    assert!(!o.status.success() && !stderr(&o).contains("panicked"));
    assert!(stderr(&o).contains("--critic-min-points"), "{}", stderr(&o));

    // --trust-contenders is kept with the experiment; a strategy without the gate refuses it
    let mut args = named("fnas", "8", "contenders", "8");
    args.push("--trust-contenders");
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = show_json(&store, "contenders").to_string();
    assert!(shown.contains("\"trust_contenders\":true"), "{shown}");
    assert!(show_json(&store, "early")
        .to_string()
        .contains("\"trust_contenders\":false"));
    let mut args = named("fnas-value", "8", "nogate", "8");
    args.push("--trust-contenders");
    assert_clean_error(&run(&args), "needs a strategy with the critic's gate");

    // --gate-after-calibration: kept with the experiment, and the first 16 proposals the
    // critic scores are all evaluated (their errors calibrate its std)
    let mut args = named("fnas", "40", "strict", "8");
    args.push("--gate-after-calibration");
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = show_json(&store, "strict");
    assert!(
        v.to_string().contains("\"gate_after_calibration\":true"),
        "{v}"
    );
    let scored: Vec<&str> = v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["prediction"].is_null())
        .map(|t| t["source"].as_str().unwrap())
        .collect();
    assert!(scored.len() >= 16, "scored {}", scored.len());
    assert!(
        scored[..16].iter().all(|s| *s != "critic"),
        "trusted before calibration: {scored:?}"
    );
    let mut args = named("fnas-value", "8", "nogate2", "8");
    args.push("--gate-after-calibration");
    assert_clean_error(&run(&args), "needs a strategy with the critic's gate");

    // --gate-tau: kept with the experiment; a positive number, for a strategy with the gate
    let mut args = named("fnas", "8", "tau", "8");
    args.extend(["--gate-tau", "1.5"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(show_json(&store, "tau").to_string().contains("\"tau\":1.5"));
    for (bad, said) in [
        (
            "--gate-tau=0",
            "positive number of reward standard deviations",
        ),
        (
            "--gate-tau=-1",
            "positive number of reward standard deviations",
        ),
        (
            "--gate-tau=nan",
            "positive number of reward standard deviations",
        ),
        (
            "--gate-tau=inf",
            "positive number of reward standard deviations",
        ),
        ("--gate-tau=x", "`x` is not a number"),
    ] {
        let mut args = named("fnas", "8", "badtau", "8");
        args.push(bad);
        let o = run(&args);
        let e = stderr(&o);
        assert!(!o.status.success() && !e.contains("panicked"), "{e}");
        assert!(e.contains(said), "{e}");
    }
    let mut args = named("ppo", "8", "nogate3", "8");
    args.truncate(args.len() - 2); // ppo refuses --critic-min-points first
    args.extend(["--gate-tau", "1.5"]);
    assert_clean_error(&run(&args), "needs a strategy with the critic's gate");
}

/// `--screen K` (critic-ranked proposals) is kept with the experiment; once the critic
/// is usable every trained child is one it scored and none repeats an evaluated one;
/// a strategy without a critic refuses it.
#[test]
fn screen_trains_only_critic_rated_new_proposals() {
    let data = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let (s, d) = (store.to_str().unwrap(), data.to_str().unwrap());
    let mut args = search_args(s, "fnas", "32", d);
    args.retain(|a| *a != "--json"); // the progress lines go to the (piped) stderr
    args.extend(["--critic-min-points", "8", "--screen", "4"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = show_json(&store, "exp");
    assert!(v.to_string().contains("\"screen\":4"), "{v}");
    let trials = v["trials"].as_array().unwrap();
    let late: Vec<_> = trials
        .iter()
        .filter(|t| t["batch"].as_u64().unwrap() >= 1)
        .collect();
    assert!(!late.is_empty());
    assert!(
        late.iter().all(|t| !t["prediction"].is_null()),
        "from the second batch on, every proposal is one the critic rated: {v}"
    );
    let mut archs: Vec<String> = trials.iter().map(|t| t["canonical"].to_string()).collect();
    let n = archs.len();
    archs.sort();
    archs.dedup();
    assert_eq!(
        archs.len(),
        n,
        "the screen never re-proposes an evaluated architecture"
    );
    // the progress line counts the draws it dropped: 3 of every 4 once the critic acts
    let log = stderr(&o);
    let dropped: u64 = log
        .rsplit("screened out ")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no `screened out N` in: {log}"));
    let scored = late.len() as u64;
    assert_eq!(dropped, 3 * scored, "{log}");

    // resumed, the stored setting wins, and a different flag is reported as ignored
    let resume = |screen: &'static str| {
        let mut args = search_args(s, "fnas", "32", d);
        args.retain(|a| *a != "--json");
        args.extend(["--critic-min-points", "8", "--screen", screen, "--resume"]);
        run(&args)
    };
    let o = resume("16");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--screen 16 is ignored: the experiment has --screen 4"),
        "{}",
        stderr(&o)
    );
    let o = resume("4");
    assert!(
        o.status.success() && !stderr(&o).contains("ignored"),
        "{}",
        stderr(&o)
    );

    let mut args = search_args(s, "ppo", "8", d);
    args.extend(["--screen", "4"]);
    assert_clean_error(&run(&args), "--screen needs a strategy with a critic");
    let mut args = search_args(s, "fnas", "8", d);
    args.extend(["--screen", "0"]);
    let o = run(&args);
    assert!(!o.status.success() && !stderr(&o).contains("panicked"));
}

/// `bench --trust-contenders` switches the gate rule of the gated strategies and says so
/// under the table; with no gated strategy to apply to, it is refused.
#[test]
fn bench_trust_contenders() {
    let data = data_dir();
    let d = data.to_str().unwrap();
    let bench = |strategies: &str| {
        run(&[
            "bench",
            "--benchmark",
            "nas-bench-graph",
            "--datasets",
            "cora",
            "--strategies",
            strategies,
            "--seeds",
            "1",
            "--budget",
            "40",
            "--jobs",
            "1",
            "--data-dir",
            d,
            "--trust-contenders",
        ])
    };
    assert_clean_error(
        &bench("ppo,fnas-value"),
        "needs a strategy with the critic's gate",
    );
    let o = bench("ppo,fnas-gate");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("gate rule: --trust-contenders"), "{out}");
    assert!(out.contains("fnas-gate"), "{out}");
}

#[test]
fn sigkill_then_resume_fnas_select() {
    kill_and_resume("fnas-select", "200");
}

/// `fnas-select`: its flags are kept with the experiment, no evaluated architecture is
/// proposed twice, and bad values are refused naming the flag with the store untouched.
#[test]
fn fnas_select_flags_and_bad_input() {
    let data = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let (s, d) = (store.to_str().unwrap(), data.to_str().unwrap());
    let mut args = search_args(s, "fnas-select", "40", d);
    args.extend([
        "--acquisition",
        "ucb",
        "--encoding",
        "one-hot",
        "--candidates",
        "30",
    ]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = show_json(&store, "exp");
    let text = v.to_string();
    assert!(text.contains("\"acquisition\":\"ucb\"") && text.contains("\"encoding\":\"one-hot\""));
    assert!(text.contains("\"candidates\":30"), "{text}");
    assert_eq!(total_cost(&v), 40);
    let before = std::fs::read(&store).unwrap();
    for (flag, value, said) in [
        ("--acquisition", "greedy", "unknown acquisition `greedy`"),
        ("--encoding", "paths", "unknown encoding `paths`"),
        ("--candidates", "0", "expected a count from 1"),
        ("--candidates", "-3", "expected a count from 1"),
    ] {
        let mut args = search_args(s, "fnas-select", "40", d);
        args.extend([flag, value]);
        let o = run(&args);
        let e = stderr(&o);
        assert!(!o.status.success() && !e.contains("panicked"), "{e}");
        assert!(e.contains(flag) && e.contains(said), "{e}");
    }
    let mut args = search_args(s, "ppo", "8", d);
    args.extend(["--acquisition", "ei"]);
    assert_clean_error(&run(&args), "need a fnas-select strategy");
    assert_eq!(std::fs::read(&store).unwrap(), before, "store changed");
    // on --resume the stored settings win, and the user is told
    let mut args = search_args(s, "fnas-select", "40", d);
    args.retain(|a| *a != "--json"); // warnings are printed without --json
    args.extend(["--resume", "--acquisition", "ei"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("are ignored: the experiment has --acquisition ucb"),
        "{}",
        stderr(&o)
    );
}

/// Settings stored without a version (version 0, as fnas wrote them before versions were
/// recorded) are read through `migrate` and resume as before; settings of a newer
/// version are refused by `search --resume` and `worker`, while `ls` and `show` still
/// list the experiment.
#[test]
fn settings_versions_on_resume() {
    let data = data_dir();
    let d = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole.db");
    let o = run(&search_args(whole.to_str().unwrap(), "evolution", "24", d));
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = show_json(&whole, "exp");
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let o = run(&search_args(s, "evolution", "16", d));
    assert!(o.status.success(), "{}", stderr(&o));
    let set_config = |sql: &str| {
        let db = rusqlite::Connection::open(&store).unwrap();
        db.execute(sql, []).unwrap();
    };
    set_config("UPDATE experiments SET config = json_remove(config, '$.version')");
    let mut args = search_args(s, "evolution", "24", d);
    args.push("--resume");
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = show_json(&store, "exp");
    assert_eq!(total_cost(&v), 24);
    assert_eq!(arch_sequence(&v), arch_sequence(&reference));

    set_config("UPDATE experiments SET config = json_set(config, '$.version', 99)");
    let mut args = search_args(s, "evolution", "32", d);
    args.retain(|a| *a != "--json");
    args.push("--resume");
    assert_clean_error(&run(&args), "written by a newer fnas");
    let o = run(&["worker", "--experiment", "exp", "--store", s]);
    assert_clean_error(&o, "written by a newer fnas");
    let o = run(&["show", "exp", "--store", s]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("newer fnas"), "{}", stderr(&o));
    assert_eq!(total_cost(&show_json(&store, "exp")), 24);
    let o = run(&["ls", "--store", s]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `search --help` groups its flags under headings; `bench` shares the reward, critic
/// and fnas-select groups.
#[test]
fn help_groups_the_flags() {
    let o = run(&["search", "--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    let at = |s: &str| {
        help.find(s)
            .unwrap_or_else(|| panic!("`{s}` not in search --help:\n{help}"))
    };
    let headings = [
        "\nTask:",
        "\nReward:",
        "\nCritic:",
        "\nCritic-chosen proposals (fnas-select):",
        "\nKnowledge pool:",
        "\nBudget:",
        "\nWorkers:",
    ];
    let flags = [
        "--task <TASK>",
        "--target <TARGET>",
        "--gate-tau <GATE_TAU>",
        "--acquisition <ACQUISITION>",
        "--warm-epochs <WARM_EPOCHS>",
        "--budget-images <BUDGET_IMAGES>",
        "--max-attempts <MAX_ATTEMPTS>",
    ];
    for (i, (h, f)) in headings.iter().zip(flags).enumerate() {
        assert!(at(h) < at(f), "{f} is not under {h}");
        if let Some(next) = headings.get(i + 1) {
            assert!(at(f) < at(next), "{f} is not under {h}");
        }
    }
    let o = run(&["bench", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for s in ["\nReward:", "\nCritic:", "--trust-contenders", "--target"] {
        assert!(help.contains(s), "`{s}` not in bench --help:\n{help}");
    }
}

/// Every command's help ends with examples a user can copy.
#[test]
fn every_command_help_ends_with_examples() {
    for cmd in [
        vec!["--help"],
        vec!["search", "--help"],
        vec!["ls", "--help"],
        vec!["show", "--help"],
        vec!["space", "--help"],
        vec!["bench", "--help"],
        vec!["train", "--help"],
        vec!["worker", "--help"],
        vec!["slurm", "--help"],
        vec!["export", "--help"],
        vec!["report", "--help"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_fnas"))
            .args(&cmd)
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd:?}");
        let text = String::from_utf8_lossy(&o.stdout);
        let (_, examples) = text
            .split_once("Examples:\n")
            .unwrap_or_else(|| panic!("{cmd:?}: no examples in\n{text}"));
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() >= 2, "{cmd:?}: {lines:?}");
        assert!(
            lines.iter().all(|l| l.trim_start().starts_with("fnas ")),
            "{cmd:?}: {lines:?}"
        );
    }
}

/// Names are data, not paths: every command that takes an experiment name refuses the
/// hostile ones with one line, before it creates anything.
#[test]
fn hostile_names_are_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("sub/s.db");
    let s = store.to_str().unwrap();
    // a NUL cannot be passed on a command line; the library test covers it
    for name in fnas_core::names::HOSTILE_NAMES
        .iter()
        .filter(|n| !n.contains('\0'))
    {
        let out = tmp.path().join("out");
        let o = out.to_str().unwrap();
        let commands: Vec<Vec<&str>> = vec![
            vec![
                "search",
                "--task",
                "nas-bench-graph/cora",
                "--budget",
                "2",
                "--name",
                name,
                "--store",
                s,
            ],
            vec![
                "search",
                "--task",
                "nas-bench-graph/cora",
                "--budget",
                "2",
                "--strategy",
                "fnas",
                "--transfer-from",
                name,
                "--store",
                s,
            ],
            vec!["show", name, "--store", s],
            vec!["worker", "--experiment", name, "--store", s],
            vec!["slurm", "--experiment", name, "--store", s],
            vec!["export", name, "--best", "--out", o, "--store", s],
            vec!["report", name, "--out", o, "--store", s],
            vec![
                "train",
                "--arch",
                "median",
                "--task",
                "fashion-mnist-tiny",
                "--pool",
                s,
                "--pool-experiment",
                name,
            ],
        ];
        for args in commands {
            if name.is_empty() && args[0] == "train" {
                continue; // the standalone trainer's own pool name
            }
            let o = run(&args);
            assert_clean_error(&o, "experiment name");
            assert!(
                !tmp.path().join("sub").exists(),
                "{args:?} created the store"
            );
            assert!(!out.exists(), "{args:?} wrote its output");
        }
    }
}

/// `--kernels` with an unknown name, and `--device cuda` in a build without the `cuda`
/// feature: one line naming what is missing, before any store is made.
#[test]
fn bad_kernels_and_a_missing_cuda_build_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut a = vec!["train", "--arch", "median", "--task", "fashion-mnist-tiny"];
        a.extend_from_slice(extra);
        run(&a)
    };
    let o = train(&["--kernels", "cudnn"]);
    assert_clean_error(&o, "unknown kernels 'cudnn': expected one of burn, fast");
    let o = run(&[
        "search",
        "--task",
        "fashion-mnist-tiny",
        "--budget",
        "1",
        "--kernels",
        "mkl",
        "--store",
        s,
    ]);
    assert_clean_error(&o, "unknown kernels 'mkl'");
    #[cfg(not(feature = "cuda"))]
    {
        let o = train(&["--device", "cuda"]);
        assert_clean_error(&o, "built without CUDA");
        let o = train(&["--device", "cuda:0", "--kernels", "fast"]);
        assert_clean_error(&o, "built without CUDA");
    }
    assert!(!store.exists(), "a store was made for a refused search");
}
