#![allow(clippy::unwrap_used, clippy::expect_used)]
//! CI only: the status page (`GET /` on the admin listener) in a real headless browser, against
//! canaryd running a rollout with real traffic. Needs Debian's `chromium` on the PATH (or its
//! path in `$CHROMIUM`); run with `cargo test --test status_page_ci -- --ignored`.

mod support;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A route whose analysis checks every 300 ms through nine steps, so it is Progressing for a
/// few seconds: long enough for the page to draw a rollout in flight.
fn rollout(primary: &Upstream, canary: &Upstream, state: &str) -> String {
    let analysis = "judge = \"threshold\"\ninterval = \"300ms\"\nthreshold = 5\n\
                    step_weights = [10, 20, 30, 40, 50, 60, 70, 80, 90]\n\
                    min_requests = 5\ninconclusive_limit = 20";
    base_config(state, "") + &analysed_route(primary, canary, analysis) + BUILTIN_METRICS
}

const PHASES: [&str; 8] = [
    "Idle",
    "Static",
    "Waiting",
    "Progressing",
    "Paused",
    "WaitingPromotion",
    "Succeeded",
    "Failed",
];

/// Headless chromium in its own process group, killed with everything it spawned (renderer,
/// GPU and zygote processes) when dropped: a failing assertion leaves no browser behind.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // The crate forbids unsafe code, so no libc::killpg: shell out to kill(1).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0.id())])
                .status();
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Run chromium on `url` with `mode` (`--dump-dom` or `--screenshot=…`), stdout to `out`.
async fn chromium(url: &str, mode: &str, out: &Path) {
    use std::os::unix::process::CommandExt;
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let profile = tempfile::tempdir().unwrap();
    let err_path = out.with_extension("stderr");
    let child = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,900",
            // Virtual time: the page's 2 s refreshes run without waiting for them in real
            // time; pending fetches hold virtual time, so the answers are drawn before the dump.
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(out).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin} (install Debian's chromium): {e}"));
    let mut browser = Browser(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = browser.0.try_wait().unwrap() {
            break status;
        }
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "chromium {mode} timed out:\n{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium {mode} failed: {status}\n{stderr}"
    );
}

/// The text of `name="…"` in one serialized tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// Every `<tag …>` opening tag in `html`.
fn tags<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    html.match_indices(&open)
        .filter_map(|(i, _)| html[i..].find('>').map(|end| &html[i..i + end + 1]))
        .collect()
}

/// The series of one chart, `(class, data points, d)`, from its `<svg … data-series="…">`.
fn chart<'a>(card: &'a str, series: &str) -> Vec<(&'a str, usize, &'a str)> {
    let marker = format!("data-series=\"{series}\"");
    let start = card
        .find(&marker)
        .unwrap_or_else(|| panic!("no {series} chart in the card:\n{card}"));
    let svg = &card[start..start + card[start..].find("</svg>").unwrap()];
    tags(svg, "path")
        .into_iter()
        .map(|p| {
            let points = attr(p, "data-points")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (
                attr(p, "class").unwrap_or(""),
                points,
                attr(p, "d").unwrap_or(""),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (Debian package chromium)"]
async fn the_status_page_draws_a_rollout_in_progress_in_a_real_browser() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let state = format!("{}/", dir.path().display());
    let proxy = Canaryd::start(&rollout(&primary, &canary, &state));
    let load = Load::start(proxy.url("/"), 200);

    // Two passed checks (weight 30) before the browser looks, so the charts have a history.
    eventually("two passed checks", Duration::from_secs(15), || {
        proxy
            .server()
            .analysis()
            .status("shop")
            .is_some_and(|s| s.weight >= 30 || s.phase != "Progressing")
    })
    .await;

    let url = format!("http://{}/", proxy.admin);
    let out = tempfile::tempdir().unwrap();
    let dom_path = out.path().join("dom.html");
    chromium(&url, "--dump-dom", &dom_path).await;
    let dom = std::fs::read_to_string(&dom_path).unwrap();

    // The route's card, up to the next card (or the end of the page).
    let start = dom
        .find("data-route=\"shop\"")
        .unwrap_or_else(|| panic!("no card for shop in the page:\n{dom}"));
    let card = &dom[start..];
    let card = &card[..card[1..]
        .find("data-route=\"")
        .map_or(card.len(), |i| i + 1)];

    // Its phase badge, as text and as the class that colours it.
    let badge = tags(card, "span")
        .into_iter()
        .find(|t| attr(t, "class").is_some_and(|c| c.split(' ').any(|c| c == "phase")))
        .unwrap_or_else(|| panic!("no phase badge in the card:\n{card}"));
    let phase = attr(badge, "class")
        .unwrap()
        .trim_start_matches("phase")
        .trim();
    eprintln!("the page showed shop {phase}");
    assert!(PHASES.contains(&phase), "phase badge {badge:?}");
    // While the browser looked the rollout advanced, or finished: both are a rollout drawn.
    assert!(
        ["Progressing", "WaitingPromotion", "Succeeded"].contains(&phase),
        "phase {phase}"
    );
    let badge_at = card.find(badge).unwrap() + badge.len();
    assert!(
        card[badge_at..].starts_with(phase),
        "badge text is its phase"
    );

    // Three charts with data: the weight, and primary vs canary for success rate and P99.
    let weight = chart(card, "weight");
    assert!(
        weight
            .iter()
            .any(|(class, points, d)| class.contains("canary")
                && *points >= 2
                && d.starts_with('M')),
        "weight chart {weight:?}"
    );
    for series in ["success", "p99"] {
        let lines = chart(card, series);
        for version in ["primary", "canary"] {
            assert!(
                lines
                    .iter()
                    .any(|(class, points, d)| class.contains(version)
                        && *points >= 1
                        && d.starts_with('M')),
                "{series} chart, {version}: {lines:?}"
            );
        }
    }
    assert!(dom.contains("class=\"live\""), "the page reached the API");
    assert!(
        card.contains("Advance shop canary weight"),
        "events listed:\n{card}"
    );

    // A screenshot: a real PNG of the window's size, with something drawn on it (a blank
    // 1280×900 page compresses to about 5 KB; the page with its charts to well over 50 KB).
    let png_path = out.path().join("status.png");
    chromium(
        &url,
        &format!("--screenshot={}", png_path.display()),
        &out.path().join("shot.out"),
    )
    .await;
    load.stop().await;
    let png = std::fs::read(&png_path).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900));
    assert!(
        png.len() > 20_000,
        "screenshot of {} bytes looks blank",
        png.len()
    );
    // `STATUS_PAGE_SCREENSHOT=docs/status-page.png` keeps the picture (e.g. for the docs).
    if let Ok(keep) = std::env::var("STATUS_PAGE_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
}
