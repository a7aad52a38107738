//! The command line (docs/operations.md#cli): argument parsing and the `run` and `check` commands.
//! Errors become messages and exit codes here, at the binary's edge.

mod admin_client;
mod control;
mod logging;
mod simulate;
mod warnings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::control::load_with_certificate;
use crate::server::{Server, Stopped};

/// canaryd: a reverse proxy that runs canary releases by itself.
#[derive(Debug, Parser)]
#[command(name = "canaryd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// Config file
    #[arg(
        short = 'c',
        long = "config",
        env = "CANARYD_CONFIG",
        default_value = "config/canaryd.toml"
    )]
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Exit 1 on warnings too (an open admin API, an endpoint name that does not resolve)
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, clap::Args)]
struct AdminArg {
    /// Admin API base URL
    #[arg(long, env = "CANARYD_ADMIN", default_value = "http://127.0.0.1:9901")]
    admin: String,
}

impl AdminArg {
    fn client(&self) -> Result<admin_client::AdminClient, ExitCode> {
        let token = std::env::var("CANARYD_ADMIN_TOKEN").ok();
        admin_client::AdminClient::new(&self.admin, token).map_err(|e| {
            eprintln!("canaryd: {e}");
            ExitCode::from(2)
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve.
    Run(ConfigArg),
    /// Validate the config file and exit: 0 valid, 1 invalid (warnings are printed).
    Check(CheckArgs),
    /// A whole rollout on loopback with built-in backends and load.
    Demo(DemoArgs),
    /// Routes, phase, weight and last analysis.
    Status {
        /// Only this route.
        route: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArg,
    },
    /// Skip the rest of the analysis and promote now.
    Promote(RouteArg),
    /// Roll back now (phase Failed).
    Abort(RouteArg),
    /// Freeze weight and analysis.
    Pause(RouteArg),
    /// Continue a paused rollout.
    Resume(RouteArg),
    /// Start the rollout of a Failed revision again.
    Retry(RouteArg),
    /// Run a route's analysis many times on a virtual clock with drawn outcomes.
    Simulate(simulate::SimulateArgs),
    /// Re-read the config file (same as SIGHUP).
    Reload {
        #[command(flatten)]
        admin: AdminArg,
    },
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Share of canary requests answered 500, 0..1 (0.2 makes the canary fail its analysis)
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    canary_error_rate: f64,
    /// Extra latency of every canary answer, e.g. 300ms
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    canary_latency: std::time::Duration,
    /// Requests per second sent through the proxy
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=20000))]
    rps: u32,
    /// Proxy listen address
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Admin listen address (status page, /metrics, API)
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: std::net::SocketAddr,
    /// After the outcome, keep the proxy, status page and load running until Ctrl-C
    #[arg(long)]
    keep_running: bool,
    /// Analysis interval (docs/demo.md: 1s; shorter only to test the demo itself)
    #[arg(long, default_value = "1s", value_parser = parse_duration, hide = true)]
    interval: std::time::Duration,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 300ms or 1s)"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("expected a share between 0 and 1, e.g. 0.2".to_owned()),
    }
}

#[derive(Debug, clap::Args)]
struct RouteArg {
    /// Route name.
    route: String,
    #[command(flatten)]
    admin: AdminArg,
}

/// Parse arguments and run the command; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check(&args.config.file, args.strict),
        Command::Run(arg) => run(&arg.file),
        Command::Demo(args) => crate::demo::run(&crate::demo::DemoOptions {
            canary_error_rate: args.canary_error_rate,
            canary_latency: args.canary_latency,
            rps: args.rps,
            listen: args.listen,
            admin: args.admin,
            interval: args.interval,
            keep_running: args.keep_running,
        }),
        Command::Status { route, json, admin } => match admin.client() {
            Ok(client) => control::status(&client, route.as_deref(), json),
            Err(code) => code,
        },
        Command::Simulate(args) => simulate::run(&args),
        Command::Promote(arg) => route_command(&arg, "promote"),
        Command::Abort(arg) => route_command(&arg, "abort"),
        Command::Pause(arg) => route_command(&arg, "pause"),
        Command::Resume(arg) => route_command(&arg, "resume"),
        Command::Retry(arg) => route_command(&arg, "retry"),
        Command::Reload { admin } => match admin.client() {
            Ok(client) => control::reload(&client),
            Err(code) => code,
        },
    }
}

fn route_command(arg: &RouteArg, command: &str) -> ExitCode {
    match arg.admin.client() {
        Ok(client) => control::command(&client, &arg.route, command),
        Err(code) => code,
    }
}

fn check(file: &std::path::Path, strict: bool) -> ExitCode {
    // Also loads the certificate and key, so a pair that `run` would refuse fails here first.
    match load_with_certificate(file, true) {
        Ok((config, _)) => {
            let found: Vec<String> = warnings::open_admin(&config)
                .map(|w| format!("{}: warning: {w}", file.display()))
                .into_iter()
                .chain(warnings::unresolved_endpoints(&config))
                .collect();
            for warning in &found {
                eprintln!("{warning}");
            }
            if strict && !found.is_empty() {
                eprintln!(
                    "{}: {} warning(s) with --strict",
                    file.display(),
                    found.len()
                );
                return ExitCode::from(1);
            }
            println!(
                "{}: ok ({} route{})",
                file.display(),
                config.routes.len(),
                if config.routes.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(1)
        }
    }
}

fn run(file: &std::path::Path) -> ExitCode {
    // The certificates are loaded here, so a bad pair gets a positioned error.
    let (config, certificates) = match load_with_certificate(file, true) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    logging::init(&config.log);
    if let Some(warning) = warnings::open_admin(&config) {
        tracing::warn!("{warning}");
    }
    let mut server = match Server::start_with_certificates(config, certificates) {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(
                "{}",
                anyhow::Error::from(error)
                    .chain()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": ")
            );
            return ExitCode::from(1);
        }
    };
    let stopped = server.wait_for_stop();
    server.shutdown();
    match stopped {
        Stopped::Signal => ExitCode::SUCCESS,
        // A vital task ended: drained, and now restarted by systemd or Kubernetes.
        Stopped::Failed(_) => ExitCode::from(1),
    }
}
