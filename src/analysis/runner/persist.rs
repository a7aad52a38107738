//! The one writer of the state file: rollouts (with the sequential judge's evidence) are sent
//! here after every transition and check, and saved atomically, off the request path and off
//! the route tasks. The writer is a vital task (`crate::vitals`): if it ends, canaryd stops.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::analysis::runner::state_file::{LoadOutcome, StateDocument, StateFile};
use crate::analysis::{Rollout, StepEvidence};
use crate::vitals::Vitals;

/// One route's entry in the state file (docs/rollouts.md#state-file): the rollout, and the
/// sequential judge's evidence as of the last check, so that a restart mid-step resumes with
/// it instead of gathering the step's evidence again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedRoute {
    /// The rollout's fields, at the top of the entry (as before evidence was kept).
    #[serde(flatten)]
    pub rollout: Rollout,
    /// Absent in files written before it was kept, and for the threshold judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<StepEvidence>,
}

/// Sends rollouts to the state writer.
#[derive(Debug, Clone)]
pub struct Persist {
    tx: mpsc::UnboundedSender<PersistMsg>,
    /// What was sent last, by route: what a restarted route task resumes from.
    last: Arc<Mutex<BTreeMap<String, SavedRoute>>>,
}

#[derive(Debug)]
enum PersistMsg {
    Save(Box<SavedRoute>),
    Forget(String),
    Flush(oneshot::Sender<()>),
}

/// Read the state file at start: the rollouts it holds, or none when it is missing, corrupt
/// (moved aside and logged) or unreadable (logged). canaryd always starts serving.
pub fn load_rollouts(file: &StateFile) -> BTreeMap<String, SavedRoute> {
    match file.load::<SavedRoute>() {
        LoadOutcome::Loaded(doc) => doc.routes,
        LoadOutcome::Missing => BTreeMap::new(),
        LoadOutcome::Corrupt { moved_to, reason } => {
            tracing::error!(
                file = %file.path().display(),
                moved_to = %moved_to.display(),
                "state file is corrupt ({reason}); moved aside, rollouts start from their first step"
            );
            BTreeMap::new()
        }
        LoadOutcome::Unreadable { error } => {
            tracing::error!(
                file = %file.path().display(),
                "state file cannot be read ({error}); rollouts start from their first step"
            );
            BTreeMap::new()
        }
    }
}

impl Persist {
    /// Start the writer, a vital task, with the rollouts already known.
    pub fn spawn(
        file: StateFile,
        initial: BTreeMap<String, SavedRoute>,
        vitals: &Vitals,
    ) -> Persist {
        let (tx, rx) = mpsc::unbounded_channel();
        let last = Arc::new(Mutex::new(initial.clone()));
        vitals.spawn("state writer", write_loop(Arc::new(file), initial, rx));
        Persist { tx, last }
    }

    /// Save a route's rollout and the judge's evidence (asynchronously; bursts are folded into
    /// one write).
    pub fn save(&self, rollout: &Rollout, evidence: Option<&StepEvidence>) {
        let saved = SavedRoute {
            rollout: rollout.clone(),
            evidence: evidence.cloned(),
        };
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(rollout.route().to_owned(), saved.clone());
        if self.tx.send(PersistMsg::Save(Box::new(saved))).is_err() {
            // The vital-task watcher has seen the writer end and stops canaryd.
            tracing::error!(route = %rollout.route(), "rollout not saved: the state writer has stopped");
        }
    }

    /// What was last saved for `route`.
    pub fn last(&self, route: &str) -> Option<SavedRoute> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .cloned()
    }

    /// Drop a route that no longer has an analysis.
    pub fn forget(&self, route: &str) {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(route);
        let _ = self.tx.send(PersistMsg::Forget(route.to_owned()));
    }

    /// Wait until everything sent so far is on disk.
    pub async fn flush(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(PersistMsg::Flush(done)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_loop(
    file: Arc<StateFile>,
    mut routes: BTreeMap<String, SavedRoute>,
    mut rx: mpsc::UnboundedReceiver<PersistMsg>,
) {
    while let Some(first) = rx.recv().await {
        let mut dirty = false;
        let mut flushed = Vec::new();
        let mut apply = |msg: PersistMsg, routes: &mut BTreeMap<String, SavedRoute>| match msg {
            PersistMsg::Save(saved) => {
                routes.insert(saved.rollout.route().to_owned(), *saved);
                dirty = true;
            }
            PersistMsg::Forget(route) => {
                dirty |= routes.remove(&route).is_some();
            }
            PersistMsg::Flush(done) => flushed.push(done),
        };
        apply(first, &mut routes);
        while let Ok(more) = rx.try_recv() {
            apply(more, &mut routes);
        }
        if dirty {
            let doc = StateDocument::new(routes.clone());
            let file = file.clone();
            let saved = tokio::task::spawn_blocking(move || file.save(&doc)).await;
            match saved {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("cannot save rollout state: {e}"),
                Err(e) => tracing::error!("state writer failed: {e}"),
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}
