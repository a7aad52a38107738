//! The persisted rollout state (docs/rollouts.md#state-file).
//!
//! # Schema
//!
//! The state file is one JSON object, written pretty-printed with a trailing newline:
//!
//! ```json
//! {
//!   "version": 1,
//!   "written_at": 1767225600,
//!   "routes": {
//!     "shop": { "...": "per-route rollout state" }
//!   }
//! }
//! ```
//!
//! - `version` (unsigned integer, required): the schema version of the whole document. This build
//!   reads and writes exactly [`STATE_VERSION`] (`1`). Any change that an older canaryd could
//!   misread (a renamed, removed or re-interpreted field, in the document or in a route entry) bumps
//!   it. A document with another version is never guessed at: a newer one (written by a newer
//!   canaryd, e.g. before a downgrade) and an unknown one (`0`, missing, not a number) are both
//!   treated as corrupt — moved aside, logged, and every rollout starts again from its first step.
//! - `written_at` (unsigned integer, required): Unix time in seconds when the file was written.
//!   Informational (logs, operators); it is not used to decide anything.
//! - `routes` (object, required): route name → that route's rollout state. The entry's shape is
//!   defined by the rollout engine (the type parameter `R` here); an entry that does not
//!   deserialize makes the whole document corrupt, because resuming some routes from a file that
//!   is partly wrong is worse than starting all of them afresh.
//!
//! Unknown top-level fields are rejected for the same reason: a version-1 canaryd never writes
//! them, so their presence means the file was not written by us.
//!
//! # Durability
//!
//! [`StateFile::save`] writes a temp file in the same directory (`.<name>.tmp-<pid>`), fsyncs it,
//! renames it over the target and fsyncs the directory, so after a crash the file is either the
//! old or the new document, never a mix, and a completed save survives power loss.
//!
//! # Cost and where to call it
//!
//! A save is a few hundred bytes of JSON and two fsyncs: cheap enough for every rollout
//! transition, but it is *blocking* file IO whose fsyncs can take milliseconds on a busy disk. Call
//! it from the control/analysis task (ideally via `tokio::task::spawn_blocking`), never on the
//! request path.
//!
//! # Never trusted blindly
//!
//! [`StateFile::load`] never fails the process: a missing file is a fresh start, an unparsable,
//! oversized, wrong-version or partly invalid file is moved aside to `<path>.corrupt-<unix time>`
//! (never deleted) and reported, and a file that cannot be read at all is reported too. In every
//! non-[`LoadOutcome::Loaded`] case the caller starts every rollout from its first step.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The schema version this build reads and writes.
pub const STATE_VERSION: u32 = 1;

/// Files larger than this are not parsed: a real state file is a few KiB, so a bigger one is
/// not ours (and reading it whole would only waste memory).
pub const MAX_STATE_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The whole state file: a schema version, when it was written, and one entry per route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDocument<R> {
    /// Schema version; [`STATE_VERSION`] for every document this build writes or accepts.
    pub version: u32,
    /// Unix time (seconds) of the save that produced this document.
    pub written_at: u64,
    /// Route name → that route's persisted rollout state.
    pub routes: BTreeMap<String, R>,
}

impl<R> StateDocument<R> {
    /// A current-version document stamped with the current time.
    pub fn new(routes: BTreeMap<String, R>) -> Self {
        StateDocument {
            version: STATE_VERSION,
            written_at: unix_now(),
            routes,
        }
    }
}

/// What [`StateFile::load`] found. Only `Loaded` resumes rollouts; every other outcome means
/// "start every rollout from its first step" — the proxy serves either way.
#[derive(Debug)]
pub enum LoadOutcome<R> {
    /// No state file: a fresh start (first run, or the file was removed).
    Missing,
    /// A valid current-version document.
    Loaded(StateDocument<R>),
    /// The file was not a valid document; it was renamed to `moved_to` (never deleted) so an
    /// operator can inspect it, and the next save writes a fresh file.
    Corrupt {
        /// Where the bad file now is (`<path>.corrupt-<unix time>`).
        moved_to: PathBuf,
        /// Why it was rejected (parse error with line/column, version problem, bad route entry).
        reason: String,
    },
    /// The file exists but could not be read (permission denied, it is a directory, …), or it
    /// was corrupt and could not be moved aside. It is left where it is; note that a later
    /// successful save replaces it.
    Unreadable {
        /// The IO error, naming the path.
        error: StateFileError,
    },
}

/// Why the state file could not be written, read or moved aside. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The configured path has no file name (e.g. `/` or `..`).
    #[error("state file path {path} does not name a file")]
    NoFileName {
        /// The configured path.
        path: PathBuf,
    },
    /// The document could not be serialized (a route state type with a non-string map key, …).
    #[error("cannot serialize the state for {path}")]
    Serialize {
        /// The target path.
        path: PathBuf,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// Creating, writing or fsyncing the temp file failed (directory missing, disk full, …).
    #[error("cannot write temp state file {path}")]
    WriteTemp {
        /// The temp file's path (in the target's directory).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Renaming the temp file over the target failed.
    #[error("cannot rename {from} to {to}")]
    Rename {
        /// The temp file.
        from: PathBuf,
        /// The state file.
        to: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The rename happened but fsyncing the directory failed, so it may not survive a crash.
    #[error("cannot fsync directory {path}")]
    SyncDir {
        /// The directory holding the state file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading the state file failed for a reason other than "not found".
    #[error("cannot read state file {path}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A corrupt state file could not be renamed aside.
    #[error("cannot move corrupt state file {from} aside to {to} ({reason})")]
    MoveAside {
        /// The state file.
        from: PathBuf,
        /// The intended `.corrupt-` name.
        to: PathBuf,
        /// Why the file was considered corrupt.
        reason: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The state file at one path. Not generic: the route state type is chosen per call.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// Serializes saves from this process: they share one temp file name (`.tmp-<pid>`), and
    /// two interleaved writers would otherwise rename a half-written file into place.
    save_lock: Mutex<()>,
}

impl StateFile {
    /// The state file at `path`. Nothing is touched until [`save`](Self::save) or
    /// [`load`](Self::load).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateFile {
            path: path.into(),
            save_lock: Mutex::new(()),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Atomically replace the state file with `doc`.
    ///
    /// The file always gets `version` = [`STATE_VERSION`] and `written_at` = now, whatever `doc`
    /// holds in those fields, so a stale or foreign version can never be written. Blocking; see
    /// the module docs for where to call it. On error the previous file is left intact and no
    /// temp file is left behind (best effort).
    pub fn save<R: Serialize>(&self, doc: &StateDocument<R>) -> Result<(), StateFileError> {
        // Borrowing view so the caller keeps its document and nothing is cloned.
        #[derive(Serialize)]
        struct Stamped<'a, R> {
            version: u32,
            written_at: u64,
            routes: &'a BTreeMap<String, R>,
        }

        let (dir, name) = self.dir_and_name()?;
        let mut bytes = serde_json::to_vec_pretty(&Stamped {
            version: STATE_VERSION,
            written_at: unix_now(),
            routes: &doc.routes,
        })
        .map_err(|source| StateFileError::Serialize {
            path: self.path.clone(),
            source,
        })?;
        bytes.push(b'\n');

        let mut tmp_name = OsString::from(".");
        tmp_name.push(&name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = dir.join(tmp_name);

        // A poisoned lock only means another save panicked; the temp file is rewritten from
        // scratch (truncate) so there is nothing to recover.
        let _guard = self
            .save_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());

        if let Err(source) = write_synced(&tmp, &bytes) {
            let _ = fs::remove_file(&tmp);
            return Err(StateFileError::WriteTemp { path: tmp, source });
        }
        if let Err(source) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&tmp);
            return Err(StateFileError::Rename {
                from: tmp,
                to: self.path.clone(),
                source,
            });
        }
        sync_dir(&dir).map_err(|source| StateFileError::SyncDir { path: dir, source })
    }

    /// Read the state file. Never fails and never panics: see [`LoadOutcome`]. Problems are
    /// logged with `tracing::warn!` here, so the caller only has to act on the outcome.
    pub fn load<R: DeserializeOwned>(&self) -> LoadOutcome<R> {
        let bytes = match read_limited(&self.path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return LoadOutcome::Missing,
            Err(source) => {
                let error = StateFileError::Read {
                    path: self.path.clone(),
                    source,
                };
                tracing::warn!(
                    error = %error,
                    cause = %io_cause(&error),
                    "state file unreadable; every rollout starts from its first step"
                );
                return LoadOutcome::Unreadable { error };
            }
        };
        match parse::<R>(&bytes) {
            Ok(doc) => {
                tracing::debug!(path = %self.path.display(), routes = doc.routes.len(), "state file loaded");
                LoadOutcome::Loaded(doc)
            }
            Err(reason) => self.move_aside(reason),
        }
    }

    /// Rename the corrupt file to `<path>.corrupt-<unix time>` (with `.N` appended if that name
    /// is taken, so an earlier corrupt file is never overwritten) and report it.
    fn move_aside<R>(&self, reason: String) -> LoadOutcome<R> {
        let now = unix_now();
        let mut base = self.path.clone().into_os_string();
        base.push(format!(".corrupt-{now}"));
        let mut moved_to = PathBuf::from(&base);
        let mut n = 1u32;
        // `rename` silently replaces an existing target, so probe first. The state file has a
        // single owner (this process), so the check-then-rename race does not arise in practice.
        while fs::symlink_metadata(&moved_to).is_ok() {
            let mut candidate = base.clone();
            candidate.push(format!(".{n}"));
            moved_to = PathBuf::from(candidate);
            n += 1;
        }
        match fs::rename(&self.path, &moved_to) {
            Ok(()) => {
                tracing::warn!(
                    path = %self.path.display(),
                    moved_to = %moved_to.display(),
                    %reason,
                    "state file is corrupt and was moved aside; every rollout starts from its first step"
                );
                LoadOutcome::Corrupt { moved_to, reason }
            }
            Err(source) => {
                let error = StateFileError::MoveAside {
                    from: self.path.clone(),
                    to: moved_to,
                    reason,
                    source,
                };
                tracing::warn!(
                    error = %error,
                    cause = %io_cause(&error),
                    "corrupt state file left in place; every rollout starts from its first step"
                );
                LoadOutcome::Unreadable { error }
            }
        }
    }

    /// The directory to put the temp file in, and the state file's name.
    fn dir_and_name(&self) -> Result<(PathBuf, OsString), StateFileError> {
        let name = self
            .path
            .file_name()
            .ok_or_else(|| StateFileError::NoFileName {
                path: self.path.clone(),
            })?
            .to_os_string();
        let dir = match self.path.parent() {
            // A bare file name ("state.json") lives in the current directory.
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok((dir, name))
    }
}

/// The document as read, before the route entries are checked one by one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    version: u32,
    written_at: u64,
    routes: BTreeMap<String, serde_json::Value>,
}

/// Validate and decode a document; the error is the human-readable reason it was rejected.
pub(crate) fn parse<R: DeserializeOwned>(bytes: &[u8]) -> Result<StateDocument<R>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    // Check the version before the shape: a newer canaryd may have changed the shape, and
    // "written by a newer version" is the useful message then, not a field error.
    let version = match value.get("version") {
        None => return Err("no \"version\" field (not a canaryd state file?)".to_string()),
        Some(v) => v,
    };
    match version.as_u64() {
        Some(v) if v == u64::from(STATE_VERSION) => {}
        Some(v) if v > u64::from(STATE_VERSION) => {
            return Err(format!(
                "version {v} is newer than the supported version {STATE_VERSION} \
                 (written by a newer canaryd?)"
            ))
        }
        _ => {
            return Err(format!(
                "unknown version {version}; this canaryd supports version {STATE_VERSION}"
            ))
        }
    }
    let raw: RawDocument =
        serde_json::from_value(value).map_err(|e| format!("invalid document: {e}"))?;
    let mut routes = BTreeMap::new();
    for (name, entry) in raw.routes {
        let state = serde_json::from_value(entry)
            .map_err(|e| format!("route {name:?}: invalid entry: {e}"))?;
        routes.insert(name, state);
    }
    Ok(StateDocument {
        version: raw.version,
        written_at: raw.written_at,
        routes,
    })
}

/// Read the whole file, `None` if it does not exist; bigger than [`MAX_STATE_FILE_BYTES`] reads
/// only that much plus one byte, which then fails to parse (reported as corrupt).
fn read_limited(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Create (mode 0600: rollout state is nobody else's business), write and fsync `path`.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    // Data must be on disk before the rename makes it the state file; otherwise a crash could
    // leave a renamed but empty file.
    file.sync_all()
}

/// Fsync a directory so a rename in it is durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened as files on other platforms; the rename is as durable as the
/// platform makes it.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The OS error under a [`StateFileError`], for logs (the error's own Display names the path).
fn io_cause(error: &StateFileError) -> String {
    std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
