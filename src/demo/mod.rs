//! `canaryd demo` (SPEC section 9): a whole rollout on loopback in one command — two built-in
//! backends, the real proxy with a fast analysis, and a built-in load generator going through
//! the proxy like any client — narrated one line per check, ending promoted or rolled back.

mod backends;
mod narrator;
mod traffic;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::parse_str;
use crate::server::Server;

use backends::Backend;
use narrator::Narrator;

/// The demo's knobs (`canaryd demo --help`).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Share of canary requests answered 500 (0..=1).
    pub canary_error_rate: f64,
    /// Extra latency of every canary answer.
    pub canary_latency: Duration,
    /// Requests per second the load generator sends through the proxy.
    pub rps: u32,
    /// Proxy listen address.
    pub listen: SocketAddr,
    /// Admin listen address (status page, /metrics, API).
    pub admin: SocketAddr,
    /// Analysis interval (1 s; shorter only to test the demo itself).
    pub interval: Duration,
    /// After the outcome, keep everything running until Ctrl-C (to look at the status page).
    pub keep_running: bool,
}

/// The longest a demo may run before it gives up.
const DEADLINE: Duration = Duration::from_secs(60);

/// Run the demo; 0 for either expected outcome, 1 if the demo itself cannot run.
pub fn run(options: &DemoOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start a runtime: {e}")),
    };
    let backends = runtime.block_on(async {
        let primary = Backend::start("primary", 0.0, Duration::ZERO).await?;
        let canary =
            Backend::start("canary", options.canary_error_rate, options.canary_latency).await?;
        Ok::<_, std::io::Error>((primary, canary))
    });
    let (primary, canary) = match backends {
        Ok(backends) => backends,
        Err(e) => return fail(&format!("cannot start the built-in backends: {e}")),
    };
    let dir = match DemoDir::create() {
        Ok(dir) => dir,
        Err(e) => return fail(&format!("cannot create a state directory: {e}")),
    };
    let dir = &dir.0;
    let toml = demo_config(options, primary.addr(), canary.addr(), dir);
    let config = match parse_str(&toml, &dir.join("demo.toml")) {
        Ok(config) => config,
        Err(e) => return fail(&format!("internal demo config rejected: {e}")),
    };
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(e) => {
            let why = anyhow::Error::from(e)
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            return fail(&format!(
                "{why} (pick others with --listen ADDR / --admin ADDR)"
            ));
        }
    };
    let proxy = server.proxy_addrs()[0];
    let admin = server.admin_addr();
    let mut narrator = Narrator::new(options, proxy, admin);
    narrator.intro();
    let load = runtime.spawn(traffic::generate(proxy, options.rps));
    let outcome = runtime.block_on(narrator.follow(server.analysis().clone(), DEADLINE));
    if outcome.is_ok() && options.keep_running {
        println!("Still serving: status page http://{admin}/ — press Ctrl-C to stop.");
        let _ = runtime.block_on(tokio::signal::ctrl_c());
    }
    load.abort();
    std::thread::spawn(move || server.shutdown())
        .join()
        .unwrap_or_default();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => fail(&why),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("canaryd demo: {message}");
    ExitCode::from(1)
}

/// The demo's state directory, removed however the demo ends (outcome, a taken port, a
/// rejected option) short of being killed.
struct DemoDir(std::path::PathBuf);

impl DemoDir {
    fn create() -> std::io::Result<DemoDir> {
        let dir = std::env::temp_dir().join(format!("canaryd-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(DemoDir(dir))
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo's config: SPEC 9's fast analysis (interval 1 s, step 10, max 50, threshold 2).
fn demo_config(
    options: &DemoOptions,
    primary: SocketAddr,
    canary: SocketAddr,
    dir: &Path,
) -> String {
    format!(
        r#"[proxy]
listen = ["{listen}"]
workers = 1
version_header = "x-canaryd-version"

[admin]
listen = "{admin}"

[state]
path = "{state}"

[log]
level = "warn"

[[route]]
name = "shop"

[route.primary]
revision = "v1"
endpoints = ["{primary}"]

[route.canary]
revision = "v2"
endpoints = ["{canary}"]

[route.analysis]
# The demo narrates window-by-window checks ("2 failed checks roll back"): the threshold judge.
judge = "threshold"
interval = "{interval}ms"
threshold = 2
step_weight = 10
max_weight = 50
min_requests = 10
inconclusive_limit = 10

[[route.analysis.metrics]]
name = "request-success-rate"
threshold = 99.0

[[route.analysis.metrics]]
name = "request-duration"
threshold = "500ms"
quantile = 0.99
"#,
        listen = options.listen,
        admin = options.admin,
        state = dir.join("state.json").display(),
        interval = options.interval.as_millis().max(1),
    )
}
