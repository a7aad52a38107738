//! `canaryd simulate`: check a route's analysis against the traffic it really gets, before
//! trusting it (`docs/rollouts.md#checking-a-config-with-canaryd-simulate`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::analysis::Params;
use crate::config::load_file;
use crate::simulate::{simulate, Behaviour, Latency, Scenario, Summary};

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
    /// Virtual time after which a rollout counts as undecided [default: every step's
    /// max_step_duration, plus one interval]
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
    let config = match load_file(&args.file) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    let scenario = match scenario(args, &config) {
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
        print!("{}", human(&scenario, &summary));
    }
    ExitCode::SUCCESS
}

fn scenario(args: &SimulateArgs, config: &crate::config::Config) -> anyhow::Result<Scenario> {
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
    let horizon = args
        .horizon
        .unwrap_or_else(|| Scenario::default_horizon(&params));
    Ok(Scenario {
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
        horizon,
    })
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| format!("{s:.0} s"))
}

fn human(scenario: &Scenario, s: &Summary) -> String {
    let judge = match scenario.params.analysis.judge {
        crate::config::JudgeKind::Sequential => "sequential",
        crate::config::JudgeKind::Threshold => "threshold",
    };
    format!(
        "route {route} ({judge} judge), {rps} req/s, canary error rate {ce}, {runs} runs, horizon {h:.0} s\n\
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
    )
}
