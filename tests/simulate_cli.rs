//! `canaryd simulate` as a binary: its output for a known config, `--json`, and bad options
//! (exit 2 with a message), bad config files (exit 1 with FILE:LINE:COL).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

const SEED: &str = r#"
[[route]]
name = "shop"
[route.primary]
revision = "v1"
endpoints = ["127.0.0.1:9001"]
[route.canary]
revision = "v2"
endpoints = ["127.0.0.1:9002"]
[route.analysis]
interval = "60s"
step_weight = 10
max_weight = 50
[[route.analysis.metrics]]
name = "request-success-rate"
threshold = 99.0
[[route.analysis.metrics]]
name = "request-duration"
threshold = "500ms"
quantile = 0.99
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .arg("simulate")
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn prints_the_outcome_shares_times_and_exposure_for_a_known_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "seed.toml", SEED);
    let out = simulate(&[
        "-c",
        &config,
        "--rps",
        "100",
        "--canary-error-rate",
        "0.05",
        "--runs",
        "200",
        "--seed",
        "7",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // 5% errors against an allowed 1%: every run is rolled back, within the first step.
    let expected_head = "route shop (sequential judge), 100 req/s, canary error rate 0.05, 200 runs, horizon 3060 s (every step's max_step_duration)\n\
                         P(promote)   0.0000  (0)\n\
                         P(rollback)  1.0000  (200)\n\
                         P(undecided) 0.0000  (0)\n";
    assert!(stdout.starts_with(expected_head), "{stdout}");
    assert!(stdout.contains("time to decision: median "), "{stdout}");
    assert!(
        stdout.contains("canary requests served: median "),
        "{stdout}"
    );
    // Same seed, same figures.
    let again = simulate(&[
        "-c",
        &config,
        "--rps",
        "100",
        "--canary-error-rate",
        "0.05",
        "--runs",
        "200",
        "--seed",
        "7",
    ]);
    assert_eq!(text(&again.stdout), stdout);
    assert!(
        !stdout.contains("why undecided"),
        "nothing undecided: {stdout}"
    );
}

#[test]
fn the_default_horizon_follows_the_traffic_and_undecided_runs_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "seed.toml", SEED);
    // 1 req/s: the first step's canary gets 0.1 req/s; at the "good" rate (0.5% failures) the
    // judge needs 658 requests on average, 110 checks; 3 × (110 + 4 later steps) × 60 s + one
    // interval = 20,580 s, beyond the schedule's 3,060 s.
    let out = simulate(&[
        "-c",
        &config,
        "--rps",
        "1",
        "--canary-error-rate",
        "0",
        "--runs",
        "20",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "horizon 20580 s (3x the 6840 s a canary failing at the \"good\" rate needs on average at this traffic)"
        ),
        "{stdout}"
    );
    // A horizon given too short: every run undecided, and the output says why in figures.
    let out = simulate(&[
        "-c",
        &config,
        "--rps",
        "1",
        "--canary-error-rate",
        "0",
        "--runs",
        "20",
        "--horizon",
        "10m",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("horizon 600 s (--horizon)"), "{stdout}");
    assert!(stdout.contains("P(undecided) 1.0000  (20)"), "{stdout}");
    assert!(
        stdout.contains(
            "why undecided: 20 runs had no decision after 600 s. The sequential judge passes a step once the canary has served about 297 requests without a failure"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("the canary gets 0.10 req/s, so the first step needs 2970 s at least"),
        "{stdout}"
    );
}

#[test]
fn a_config_whose_tls_and_token_files_are_elsewhere_is_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let prod = format!(
        "[proxy.tls]\ncert = \"/etc/canaryd/missing.crt\"\nkey = \"/etc/canaryd/missing.key\"\n{SEED}\
         [[route.webhooks]]\ntype = \"event\"\nurl = \"https://hooks.example.com/x\"\n\
         headers = {{ Authorization = \"file:/etc/canaryd/missing-token\" }}\n"
    );
    let config = write(dir.path(), "prod.toml", &prod);
    let out = simulate(&[
        "-c",
        &config,
        "--rps",
        "100",
        "--canary-error-rate",
        "0.05",
        "--runs",
        "10",
    ]);
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(text(&out.stdout).contains("P(rollback)  1.0000  (10)"));
}

fn text_of(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn json_parses_and_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "seed.toml", SEED);
    let out = simulate(&[
        "-c",
        &config,
        "--route",
        "shop",
        "--rps",
        "100",
        "--canary-error-rate",
        "0",
        "--runs",
        "50",
        "--canary-latency",
        "mix:20ms,900ms,0.002",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["runs"], 50);
    let sum = json["promoted"].as_u64().unwrap()
        + json["rolled_back"].as_u64().unwrap()
        + json["undecided"].as_u64().unwrap();
    assert_eq!(sum, 50);
    // A clean canary at 100 req/s: promoted at the fifth step's check, 300 s in.
    assert_eq!(json["promoted"], 50, "{json}");
    assert_eq!(json["median_promote_seconds"], 300.0, "{json}");
    assert!(
        json["median_canary_requests"].as_u64().unwrap() > 8000,
        "{json}"
    );
}

#[test]
fn bad_options_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "seed.toml", SEED);
    let cases: [(&[&str], &str); 5] = [
        (
            &["-c", &config, "--rps", "100", "--canary-error-rate", "1.5"],
            "between 0 and 1",
        ),
        (
            &[
                "-c",
                &config,
                "--rps",
                "fast",
                "--canary-error-rate",
                "0.01",
            ],
            "requests per second",
        ),
        (&["-c", &config, "--rps", "100"], "--canary-error-rate"),
        (
            &[
                "-c",
                &config,
                "--rps",
                "100",
                "--canary-error-rate",
                "0",
                "--canary-latency",
                "slow",
            ],
            "invalid latency",
        ),
        (
            &[
                "-c",
                &config,
                "--route",
                "blog",
                "--rps",
                "100",
                "--canary-error-rate",
                "0",
            ],
            "route \"blog\" has no [route.analysis]",
        ),
    ];
    for (args, message) in cases {
        let out = simulate(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn an_invalid_config_exits_1_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "bad.toml",
        &SEED.replace(
            "interval = \"60s\"",
            "interval = \"60s\"\non_inconclusive = \"promote\"",
        ),
    );
    let out = simulate(&["-c", &config, "--rps", "100", "--canary-error-rate", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.toml:12:19: unknown on_inconclusive \"promote\""),
        "{stderr}"
    );
}

#[test]
fn a_bake_is_simulated_after_promotion_and_counted_in_the_horizon_and_the_times() {
    let dir = tempfile::tempdir().unwrap();
    let baked = SEED.replace(
        "max_weight = 50\n",
        "max_weight = 50\njudge = \"threshold\"\nbake = \"10m\"\n",
    );
    let config = write(dir.path(), "baked.toml", &baked);
    let run = |rate: &str| {
        let out = simulate(&[
            "-c",
            &config,
            "--rps",
            "100",
            "--canary-error-rate",
            rate,
            "--runs",
            "50",
            "--seed",
            "7",
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // Healthy: five one-minute steps, then ten bake checks: every run promoted at 900 s.
    let healthy = run("0");
    assert_eq!(healthy["promoted"], 50, "{healthy}");
    assert_eq!(healthy["median_promote_seconds"], 900.0, "{healthy}");
    // The default horizon leaves room for the bake, and says so.
    let out = simulate(&[
        "-c",
        &config,
        "--rps",
        "100",
        "--canary-error-rate",
        "0",
        "--runs",
        "5",
        "--seed",
        "7",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .contains("plus the 600 s bake"),
        "{stdout}"
    );
}
