//! What triggers a reload — SIGHUP, the config file changing on disk, an API call — and the
//! validate-then-swap step they all share.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::certificate::load_with_certificate;
use super::ControlHandle;
use crate::config::ConfigError;
use crate::metrics::MetricsRegistry;
use crate::proxy::TlsCerts;

/// Re-reads the config file and hands a valid one to the control task.
#[derive(Debug, Clone)]
pub struct Reloader {
    path: PathBuf,
    control: ControlHandle,
    registry: Arc<MetricsRegistry>,
    /// The certificate the TLS listeners serve, if any; replaced on a successful reload.
    tls: Option<Arc<TlsCerts>>,
}

/// Why a reload did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is invalid; the old configuration keeps serving.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The reload task itself failed.
    #[error("reload interrupted: {0}")]
    Interrupted(String),
}

/// Log every version whose upstream TLS is not verified (`verify = false`): at start and on
/// every reload, so the opt-out never goes unnoticed (docs/security.md#upstream-tls).
pub fn warn_unverified_upstreams(config: &crate::config::Config) {
    for route in &config.routes {
        let versions = std::iter::once(("primary", &route.primary))
            .chain(route.canary.as_ref().map(|c| ("canary", &c.version)));
        for (version, settings) in versions {
            if settings
                .transport
                .tls
                .as_ref()
                .is_some_and(|tls| !tls.verify)
            {
                tracing::warn!(
                    route = %route.name,
                    version,
                    "upstream TLS certificates are not verified (verify = false)"
                );
            }
        }
    }
}

/// Why a reload was asked for (for the log line).
#[derive(Debug, Clone, Copy)]
pub enum ReloadTrigger {
    /// SIGHUP.
    Signal,
    /// The file changed on disk.
    FileChanged,
    /// `POST /api/v1/reload` or `canaryd reload`.
    Api,
}

impl Reloader {
    /// A reloader for the file the running config came from.
    pub fn new(path: PathBuf, control: ControlHandle, registry: Arc<MetricsRegistry>) -> Self {
        Reloader {
            path,
            control,
            registry,
            tls: None,
        }
    }

    /// Also re-read the `[proxy.tls]` certificate and key on every reload and swap them into
    /// `tls` (the slot the TLS listeners accept with).
    pub fn with_tls_certs(mut self, tls: Option<Arc<TlsCerts>>) -> Self {
        self.tls = tls;
        self
    }

    /// Validate the file fully; if valid, swap it in, else keep serving the old config.
    pub async fn reload(&self, trigger: ReloadTrigger) -> Result<u64, ReloadError> {
        let path = self.path.clone();
        let serving_tls = self.tls.is_some();
        let loaded = tokio::task::spawn_blocking(move || {
            // An empty file is a file being written (truncate, then write), never a config an
            // operator means to swap in for a running proxy.
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
                return Err(ConfigError::empty(&path));
            }
            // Build the TLS configuration here, before the control task sees the new config:
            // a certificate or key that does not load, or a key that does not belong to the
            // certificate, rejects the whole reload (all or nothing, like any invalid value).
            // TLS listeners are bound at start only: a `[proxy.tls]` added by a reload takes
            // effect at the next restart (like `listen`), so only a serving proxy loads it.
            let (config, tls) = load_with_certificate(&path, serving_tls)?;
            Ok((config, tls))
        })
        .await
        .map_err(|e| ReloadError::Interrupted(e.to_string()))?;
        match loaded {
            Ok((config, tls)) => {
                if let (Some(slot), Some(tls)) = (&self.tls, tls) {
                    slot.replace(tls);
                }
                warn_unverified_upstreams(&config);
                let generation = self.control.reload(config).await.unwrap_or(0);
                tracing::info!(?trigger, file = %self.path.display(), generation, "configuration reloaded");
                Ok(generation)
            }
            Err(error) => {
                self.registry.process.reload_result(false);
                tracing::error!(?trigger, "reload rejected, old configuration kept: {error}");
                Err(ReloadError::Invalid(error))
            }
        }
    }
}

/// Start the SIGHUP listener and the file watcher on the current runtime.
pub fn spawn_reload_triggers(reloader: Reloader) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ReloadTrigger>();
    spawn_sighup(tx.clone())?;
    let watcher = watch_file(&reloader.path, tx);
    if let Err(e) = &watcher {
        tracing::warn!(error = %e, "config file watcher unavailable; SIGHUP and the API still reload");
    }
    tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        while let Some(trigger) = rx.recv().await {
            if let ReloadTrigger::FileChanged = trigger {
                settle(&mut rx).await;
            }
            let _ = reloader.reload(trigger).await;
        }
    });
    Ok(())
}

/// Editors and ConfigMap updates write in several steps: wait until the file has been quiet for
/// a moment (at most [`SETTLE_MAX`]) and fold the burst of events into one reload.
async fn settle(rx: &mut mpsc::UnboundedReceiver<ReloadTrigger>) {
    let started = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(SETTLE_QUIET).await;
        let mut more = false;
        while rx.try_recv().is_ok() {
            more = true;
        }
        if !more || started.elapsed() >= SETTLE_MAX {
            return;
        }
    }
}

const SETTLE_QUIET: Duration = Duration::from_millis(200);
const SETTLE_MAX: Duration = Duration::from_secs(2);

fn spawn_sighup(tx: mpsc::UnboundedSender<ReloadTrigger>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            if tx.send(ReloadTrigger::Signal).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Watch the file's directory rather than the file: editors and Kubernetes replace the file (or
/// a symlink to it) instead of writing it in place, which a watch on the file itself misses.
fn watch_file(
    path: &Path,
    tx: mpsc::UnboundedSender<ReloadTrigger>,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let ours = event.paths.iter().any(|p| {
            p.file_name() == name.as_deref() || p.file_name().is_some_and(|n| n == "..data")
        });
        if ours {
            let _ = tx.send(ReloadTrigger::FileChanged);
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
