//! `canaryd simulate`: check a route's analysis against the traffic it really gets, before
//! trusting it (`docs/rollouts.md#checking-a-config-with-canaryd-simulate`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::analysis::Params;
use crate::config::{load_file_unread, JudgeKind, OnInconclusive, Steps};
use crate::simulate::{
    clean_requests_to_pass, simulate, Behaviour, Horizon, Latency, Scenario, Summary,
};

/// `canaryd simulate` options.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Config file
    #[arg(short = 'c', long = "config", env = "CANARYD_CONFIG")]
    file: PathBuf,
    /// The route to simulate [default: the only route with [route.analysis]]
    #[arg(long)]
    route: Option<String>,
    /// Requests per second to the whole route
    #[arg(long, value_parser = parse_rps)]
    rps: f64,
    /// Share of canary requests that fail, 0..1
    #[arg(long, value_parser = parse_share)]
    canary_error_rate: f64,
    /// Share of primary requests that fail, 0..1
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    primary_error_rate: f64,
    /// Canary latency: 50ms, exp:50ms or mix:50ms,900ms,0.015 (1.5% take 900 ms)
    #[arg(long, default_value = "20ms")]
    canary_latency: Latency,
    /// Primary latency, same forms
    #[arg(long, default_value = "20ms")]
    primary_latency: Latency,
    /// Rollouts to simulate
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    runs: u32,
    /// Seed of the random draws (same seed, same figures)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Virtual time after which a rollout counts as undecided [default: from the schedule and
    /// the traffic: every step's max_step_duration, or 3x what a canary without failures needs
    /// at --rps if longer; the threshold judge: every check it may take]
    #[arg(long, value_parser = super::parse_duration)]
    horizon: Option<Duration>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err("expected a share between 0 and 1, e.g. 0.015".to_owned()),
    }
}

fn parse_rps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.0..=1e6).contains(&r) => Ok(r),
        _ => Err("expected requests per second, 0 to 1000000, e.g. 100 or 0.5".to_owned()),
    }
}

/// Run the command: 0 on success, 1 for an invalid config file, 2 for bad options.
pub fn run(args: &SimulateArgs) -> ExitCode {
    // The simulation serves nothing: certificate and token files need not exist here.
    let config = match load_file_unread(&args.file) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    let (scenario, horizon) = match scenario(args, &config) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("canaryd simulate: {error:#}");
            return ExitCode::from(2);
        }
    };
    let summary = simulate(&scenario, args.runs, args.seed);
    if args.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("canaryd simulate: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", human(&scenario, &summary, &horizon));
    }
    ExitCode::SUCCESS
}

fn scenario(
    args: &SimulateArgs,
    config: &crate::config::Config,
) -> anyhow::Result<(Scenario, Horizon)> {
    let analysed: Vec<_> = config
        .routes
        .iter()
        .filter_map(|r| Params::from_route(r).map(|p| (r.name.clone(), p)))
        .collect();
    let params = match &args.route {
        Some(name) => analysed
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
            .with_context(|| {
                format!(
                    "route {name:?} has no [route.analysis] with a canary in {}",
                    args.file.display()
                )
            })?,
        None => match analysed.len() {
            0 => bail!("{} has no route with [route.analysis]", args.file.display()),
            1 => analysed
                .into_iter()
                .map(|(_, p)| p)
                .next()
                .ok_or_else(|| anyhow!("no route"))?,
            _ => bail!(
                "{} has several analysed routes ({}); choose one with --route",
                args.file.display(),
                analysed
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    let horizon = match args.horizon {
        Some(given) => Horizon::given(given),
        None => Horizon::default_for(&params, args.rps),
    };
    let scenario = Scenario {
        params,
        rps: args.rps,
        primary: Behaviour {
            error_rate: args.primary_error_rate,
            latency: args.primary_latency,
        },
        canary: Behaviour {
            error_rate: args.canary_error_rate,
            latency: args.canary_latency,
        },
        horizon: horizon.duration,
    };
    Ok((scenario, horizon))
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| format!("{s:.0} s"))
}

fn human(scenario: &Scenario, s: &Summary, horizon: &Horizon) -> String {
    let judge = match scenario.params.analysis.judge {
        JudgeKind::Sequential => "sequential",
        JudgeKind::Threshold => "threshold",
    };
    let mut text = format!(
        "route {route} ({judge} judge), {rps} req/s, canary error rate {ce}, {runs} runs, horizon {h:.0} s ({basis})\n\
         P(promote)   {pp:.4}  ({promoted})\n\
         P(rollback)  {pr:.4}  ({rolled})\n\
         P(undecided) {pu:.4}  ({undecided})\n\
         time to decision: median {med}, p95 {p95} (promote: median {mp}; rollback: median {mr})\n\
         canary requests served: median {exp_med}, mean {exp_mean:.0}\n",
        route = scenario.params.route,
        rps = scenario.rps,
        ce = scenario.canary.error_rate,
        runs = s.runs,
        h = scenario.horizon.as_secs_f64(),
        basis = horizon.basis,
        pp = s.p_promote,
        promoted = s.promoted,
        pr = s.p_rollback,
        rolled = s.rolled_back,
        pu = s.p_undecided,
        undecided = s.undecided,
        med = seconds(s.median_decision_seconds),
        p95 = seconds(s.p95_decision_seconds),
        mp = seconds(s.median_promote_seconds),
        mr = seconds(s.median_rollback_seconds),
        exp_med = s.median_canary_requests,
        exp_mean = s.mean_canary_requests,
    );
    if s.undecided > 0 {
        text.push_str(&why_undecided(scenario, s));
    }
    text
}

/// Why runs ended undecided, in the figures a user can act on.
fn why_undecided(scenario: &Scenario, s: &Summary) -> String {
    let params = &scenario.params;
    let interval = params.interval().as_secs_f64();
    let mut text = format!(
        "why undecided: {} runs had no decision after {:.0} s. ",
        s.undecided,
        scenario.horizon.as_secs_f64()
    );
    let first_weight = match &params.analysis.steps {
        Steps::Weights(w) => w.first().copied(),
        Steps::Iterations(_) => None,
    };
    match (params.analysis.judge, clean_requests_to_pass(params), first_weight) {
        (JudgeKind::Sequential, Some(needed), Some(weight)) => {
            let canary_rps = scenario.rps * f64::from(weight) / 100.0;
            let seconds = if canary_rps > 0.0 {
                format!("{:.0} s", needed as f64 / canary_rps)
            } else {
                "forever".to_owned()
            };
            text.push_str(&format!(
                "The sequential judge passes a step once the canary has served about {needed} requests without a failure (more when some fail); at {} req/s and weight {weight}% the canary gets {canary_rps:.2} req/s, so the first step needs {seconds} at least. ",
                scenario.rps
            ));
            text.push_str(match params.analysis.sequential.on_inconclusive {
                OnInconclusive::Hold => "An undecided step holds (on_inconclusive = \"hold\"): more traffic, a larger first step or a longer --horizon decide more.\n",
                OnInconclusive::Rollback => "An undecided step rolls back after max_step_duration (on_inconclusive = \"rollback\").\n",
            });
        }
        (JudgeKind::Sequential, _, _) => text.push_str(
            "The canary got no traffic the simulation models (match rules and mirroring are not simulated), or there is no metric to count.\n",
        ),
        (JudgeKind::Threshold, _, _) => text.push_str(&format!(
            "The threshold judge needs one passing check of {interval:.0} s per step, and holds on failed and inconclusive checks until `threshold` or `inconclusive_limit`; a longer --horizon decides more.\n"
        )),
    }
    text
}
