//! What the demo prints: where to look, one line per check (with the weight as a bar on a
//! terminal), the warnings as they happen, and the outcome in Flagger's words.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::DemoOptions;
use crate::analysis::{AnalysisHandle, CheckReport, Severity};

/// Follows the rollout of the demo's route and tells the story.
pub struct Narrator {
    options: DemoOptions,
    proxy: SocketAddr,
    admin: SocketAddr,
    tty: bool,
    started: Instant,
}

const ROUTE: &str = "shop";

impl Narrator {
    /// A narrator writing to stdout.
    pub fn new(options: &DemoOptions, proxy: SocketAddr, admin: SocketAddr) -> Self {
        Narrator {
            options: options.clone(),
            proxy,
            admin,
            tty: std::io::stdout().is_terminal(),
            started: Instant::now(),
        }
    }

    /// Where everything is, and what will be judged.
    pub fn intro(&self) {
        let o = &self.options;
        println!(
            "canaryd demo: rolling out {ROUTE} v2 over v1 — canary error rate {:.0}%, extra latency {}, {} req/s",
            o.canary_error_rate * 100.0,
            humantime::format_duration(o.canary_latency),
            o.rps
        );
        println!("  proxy        http://{}/", self.proxy);
        println!("  status page  http://{}/", self.admin);
        println!("  metrics      http://{}/metrics", self.admin);
        println!(
            "  analysis     threshold judge (each window on its own; canaryd's default is the sequential judge), every {}: success rate >= 99%, P99 <= 500ms; weight 10 → 50 in steps of 10; 2 failed checks roll back",
            humantime::format_duration(o.interval)
        );
        println!();
        println!("Each line is one check of the requests since the last one; the weight is the one it set.");
    }

    /// Print every check until the rollout ends; `Err` if it did not end within `deadline`.
    pub async fn follow(
        &mut self,
        analysis: AnalysisHandle,
        deadline: Duration,
    ) -> Result<(), String> {
        let mut last_check: Option<CheckReport> = None;
        let mut seen_events = 0;
        loop {
            if self.started.elapsed() > deadline {
                return Err(format!("the rollout did not finish within {deadline:?}"));
            }
            let Some(status) = analysis.status(ROUTE) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if status.last_check.is_some() && status.last_check != last_check {
                last_check.clone_from(&status.last_check);
                if let Some(check) = &last_check {
                    self.check_line(status.weight, check);
                }
            }
            let events = analysis.events(Some(ROUTE));
            for event in events.iter().skip(seen_events) {
                if event.severity == Severity::Warning {
                    println!("          ! {}", event.message);
                }
            }
            seen_events = events.len();
            match status.phase {
                "Succeeded" | "Failed" => {
                    let outcome = events
                        .iter()
                        .rev()
                        .find(|e| {
                            e.message.starts_with("Promotion completed")
                                || e.message.starts_with("Rolling back")
                        })
                        .map(|e| e.message.clone())
                        .unwrap_or_else(|| format!("{ROUTE} is {}", status.phase));
                    println!();
                    println!("{outcome}");
                    println!(
                        "({} after {:.1}s)",
                        status.phase,
                        self.started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn check_line(&self, weight: u8, check: &CheckReport) {
        let version = |v: &crate::analysis::VersionReport| {
            format!(
                "{:>5} req {:>7} p99 {:>9}",
                v.requests,
                v.success_rate
                    .map_or("-".to_owned(), |r| format!("{r:.2}%")),
                v.p99_ms.map_or("-".to_owned(), |ms| format!("{ms:.1}ms")),
            )
        };
        let bar = if self.tty {
            let filled = usize::from(weight) / 5;
            format!(
                "[{}{}] ",
                "█".repeat(filled),
                "·".repeat(20 - filled.min(20))
            )
        } else {
            String::new()
        };
        println!(
            "{:>6.1}s  {bar}weight {:>3}%  canary {}  |  primary {}  {}",
            self.started.elapsed().as_secs_f64(),
            weight,
            version(&check.canary),
            version(&check.primary),
            check.outcome.as_str(),
        );
    }
}
