//! The process's vital tasks (docs/architecture.md#who-supervises-what): the control task, the
//! state writer and the analysis supervisor. Each is owned by a watcher that awaits its end;
//! any end before shutdown (a panic, or a return nobody asked for) is logged and marks the
//! process failed, which `/readyz` reports and after which `canaryd run` drains and exits
//! non-zero, for systemd or Kubernetes to restart it. A process that lost its control task
//! can no longer change a weight, and one that lost its state writer would forget decisions:
//! limping on would fail silently.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// Whether every vital task is still running; clones share the state.
#[derive(Debug, Clone)]
pub struct Vitals {
    failure: Arc<watch::Sender<Option<String>>>,
}

impl Default for Vitals {
    fn default() -> Self {
        Vitals {
            failure: Arc::new(watch::Sender::new(None)),
        }
    }
}

impl Vitals {
    /// Spawn `task` on the current runtime as the vital task `name`.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        let failure = self.failure.clone();
        tokio::spawn(async move {
            let how = match handle.await {
                Ok(()) => "ended",
                Err(e) if e.is_panic() => "panicked",
                Err(_) => "was cancelled",
            };
            let why = format!("the {name} {how}");
            tracing::error!("{why}: canaryd cannot go on and stops");
            failure.send_if_modified(|first| {
                // The first failure is the cause; later ones are its consequences.
                if first.is_some() {
                    return false;
                }
                *first = Some(why);
                true
            });
        });
    }

    /// The first vital task that ended, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Wait until a vital task ends; what ended.
    pub async fn failed(&self) -> String {
        let mut rx = self.failure.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                // Cannot happen while `self` holds the sender; wait forever rather than
                // report a failure that did not happen.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_vital_task_that_panics_or_returns_marks_the_process_failed_once() {
        let vitals = Vitals::default();
        vitals.spawn("steady task", std::future::pending());
        tokio::task::yield_now().await;
        assert_eq!(vitals.failure(), None);
        vitals.spawn("state writer", async { panic!("disk on fire") });
        let why = tokio::time::timeout(std::time::Duration::from_secs(5), vitals.failed()).await;
        assert_eq!(why.as_deref(), Ok("the state writer panicked"));
        // A later end is a consequence; the first one stays the cause.
        vitals.spawn("control task", async {});
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(
            vitals.failure().as_deref(),
            Some("the state writer panicked")
        );
    }
}
