//! The one writer of the state file: rollouts are sent here after every transition and saved
//! atomically, off the request path and off the route tasks.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::analysis::runner::state_file::{LoadOutcome, StateDocument, StateFile};
use crate::analysis::Rollout;

/// Sends rollouts to the state writer.
#[derive(Debug, Clone)]
pub struct Persist {
    tx: mpsc::UnboundedSender<PersistMsg>,
}

#[derive(Debug)]
enum PersistMsg {
    Save(Box<Rollout>),
    Forget(String),
    Flush(oneshot::Sender<()>),
}

/// Read the state file at start: the rollouts it holds, or none when it is missing, corrupt
/// (moved aside and logged) or unreadable (logged). canaryd always starts serving.
pub fn load_rollouts(file: &StateFile) -> BTreeMap<String, Rollout> {
    match file.load::<Rollout>() {
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
    /// Start the writer with the rollouts already known.
    pub fn spawn(file: StateFile, initial: BTreeMap<String, Rollout>) -> Persist {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(Arc::new(file), initial, rx));
        Persist { tx }
    }

    /// Save a route's rollout (asynchronously; bursts are folded into one write).
    pub fn save(&self, rollout: &Rollout) {
        let _ = self.tx.send(PersistMsg::Save(Box::new(rollout.clone())));
    }

    /// Drop a route that no longer has an analysis.
    pub fn forget(&self, route: &str) {
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
    mut routes: BTreeMap<String, Rollout>,
    mut rx: mpsc::UnboundedReceiver<PersistMsg>,
) {
    while let Some(first) = rx.recv().await {
        let mut dirty = false;
        let mut flushed = Vec::new();
        let mut apply = |msg: PersistMsg, routes: &mut BTreeMap<String, Rollout>| match msg {
            PersistMsg::Save(rollout) => {
                routes.insert(rollout.route().to_owned(), *rollout);
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
