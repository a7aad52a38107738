//! Tests for the state file: real files in a temp directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::*;

/// A stand-in for the rollout engine's per-route state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RouteState {
    revision: String,
    phase: String,
    weight: u8,
    failed_checks: u32,
}

fn sample() -> StateDocument<RouteState> {
    let mut routes = BTreeMap::new();
    routes.insert(
        "shop".to_string(),
        RouteState {
            revision: "v1.5.0".to_string(),
            phase: "Progressing".to_string(),
            weight: 20,
            failed_checks: 1,
        },
    );
    routes.insert(
        "api".to_string(),
        RouteState {
            revision: "v2".to_string(),
            phase: "Failed".to_string(),
            weight: 0,
            failed_checks: 5,
        },
    );
    StateDocument::new(routes)
}

/// Names of every entry in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn expect_corrupt(outcome: LoadOutcome<RouteState>) -> (PathBuf, String) {
    match outcome {
        LoadOutcome::Corrupt { moved_to, reason } => (moved_to, reason),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Write `bytes` as the state file, load it, and check it was moved aside intact.
fn load_corrupt(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, bytes).unwrap();
    let file = StateFile::new(&path);
    let (moved_to, reason) = expect_corrupt(file.load());
    assert!(
        !path.exists(),
        "the corrupt file must no longer be at the state path"
    );
    let moved_name = moved_to.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        moved_name.starts_with("state.json.corrupt-"),
        "moved to {moved_name}"
    );
    assert_eq!(moved_to.parent().unwrap(), dir.path());
    assert_eq!(fs::read(&moved_to).unwrap(), bytes, "original bytes kept");
    reason
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let file = StateFile::new(dir.path().join("state.json"));
    let doc = sample();
    file.save(&doc).unwrap();
    match file.load::<RouteState>() {
        LoadOutcome::Loaded(loaded) => {
            assert_eq!(loaded.version, STATE_VERSION);
            assert_eq!(loaded.routes, doc.routes);
            assert!(loaded.written_at >= doc.written_at);
        }
        other => panic!("expected Loaded, got {other:?}"),
    }
}

#[test]
fn save_writes_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    StateFile::new(&path).save(&sample()).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let object = value.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, ["routes", "version", "written_at"]);
    assert_eq!(value["version"], 1);
    assert!(value["written_at"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(value["routes"]["shop"]["weight"], 20);
}

#[test]
fn save_stamps_current_version_whatever_the_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let file = StateFile::new(dir.path().join("state.json"));
    let mut doc = sample();
    doc.version = 99;
    doc.written_at = 0;
    file.save(&doc).unwrap();
    match file.load::<RouteState>() {
        LoadOutcome::Loaded(loaded) => {
            assert_eq!(loaded.version, STATE_VERSION);
            assert!(loaded.written_at > 0);
        }
        other => panic!("expected Loaded, got {other:?}"),
    }
}

#[test]
fn atomic_replace_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let file = StateFile::new(&path);
    let mut doc = sample();
    file.save(&doc).unwrap();
    doc.routes.get_mut("shop").unwrap().weight = 30;
    file.save(&doc).unwrap();
    assert_eq!(entries(dir.path()), ["state.json"]);
    match file.load::<RouteState>() {
        LoadOutcome::Loaded(loaded) => assert_eq!(loaded.routes["shop"].weight, 30),
        other => panic!("expected Loaded, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn saved_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    StateFile::new(&path).save(&sample()).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn missing_file_is_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = StateFile::new(dir.path().join("state.json"));
    assert!(matches!(file.load::<RouteState>(), LoadOutcome::Missing));
    assert!(
        entries(dir.path()).is_empty(),
        "load must not create anything"
    );
}

#[test]
fn corrupt_json_is_moved_aside_and_next_save_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let garbage = b"{ this is not json \xff\n".to_vec();
    fs::write(&path, &garbage).unwrap();
    let file = StateFile::new(&path);
    let (moved_to, reason) = expect_corrupt(file.load::<RouteState>());
    assert!(reason.contains("not valid JSON"), "{reason}");
    assert_eq!(fs::read(&moved_to).unwrap(), garbage);
    assert!(!path.exists());

    let doc = sample();
    file.save(&doc).unwrap();
    match file.load::<RouteState>() {
        LoadOutcome::Loaded(loaded) => assert_eq!(loaded.routes, doc.routes),
        other => panic!("expected Loaded, got {other:?}"),
    }
    // The corrupt copy survives the save next to the new file.
    assert_eq!(fs::read(&moved_to).unwrap(), garbage);
    assert_eq!(entries(dir.path()).len(), 2);
}

#[test]
fn truncated_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.json");
    StateFile::new(&path).save(&sample()).unwrap();
    let full = fs::read(&path).unwrap();
    let reason = load_corrupt(&full[..full.len() / 2]);
    assert!(reason.contains("not valid JSON"), "{reason}");
}

#[test]
fn empty_file_is_corrupt() {
    load_corrupt(b"");
}

#[test]
fn unknown_version_is_corrupt() {
    let reason = load_corrupt(br#"{"version": 0, "written_at": 1, "routes": {}}"#);
    assert!(reason.contains("unknown version 0"), "{reason}");
    let reason = load_corrupt(br#"{"version": "1", "written_at": 1, "routes": {}}"#);
    assert!(reason.contains("unknown version"), "{reason}");
}

#[test]
fn missing_version_is_corrupt() {
    let reason = load_corrupt(br#"{"written_at": 1, "routes": {}}"#);
    assert!(reason.contains("version"), "{reason}");
}

#[test]
fn newer_version_is_corrupt_and_says_so() {
    // A newer canaryd may have changed the route shape too; the version is what gets reported.
    let reason = load_corrupt(br#"{"version": 2, "written_at": 1, "routes": {"shop": [1, 2]}}"#);
    assert!(reason.contains("newer"), "{reason}");
    assert!(reason.contains("version 2"), "{reason}");
}

#[test]
fn bad_route_entry_is_corrupt_and_names_the_route() {
    let reason = load_corrupt(
        br#"{"version": 1, "written_at": 1, "routes": {
            "api": {"revision": "v2", "phase": "Failed", "weight": 0, "failed_checks": 5},
            "shop": {"revision": "v1", "phase": "Progressing", "weight": 500, "failed_checks": 0}
        }}"#,
    );
    assert!(reason.contains("\"shop\""), "{reason}");
}

#[test]
fn unknown_top_level_field_is_corrupt() {
    load_corrupt(br#"{"version": 1, "written_at": 1, "routes": {}, "extra": true}"#);
}

#[test]
fn non_object_document_is_corrupt() {
    load_corrupt(b"[1, 2, 3]");
}

#[test]
fn a_second_corruption_does_not_overwrite_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let file = StateFile::new(&path);
    fs::write(&path, b"first").unwrap();
    let (first, _) = expect_corrupt(file.load::<RouteState>());
    fs::write(&path, b"second").unwrap();
    let (second, _) = expect_corrupt(file.load::<RouteState>());
    assert_ne!(first, second);
    assert_eq!(fs::read(&first).unwrap(), b"first");
    assert_eq!(fs::read(&second).unwrap(), b"second");
}

#[test]
fn unreadable_path_is_reported_not_moved() {
    // A directory where the file should be: reading fails with something other than NotFound.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::create_dir(&path).unwrap();
    match StateFile::new(&path).load::<RouteState>() {
        LoadOutcome::Unreadable { error } => {
            assert!(matches!(error, StateFileError::Read { .. }), "{error:?}");
            assert!(error.to_string().contains("state.json"), "{error}");
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }
    assert!(path.is_dir(), "left in place");
}

#[test]
fn save_into_missing_directory_is_a_typed_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let file = StateFile::new(missing.join("state.json"));
    let err = file.save(&sample()).unwrap_err();
    match &err {
        StateFileError::WriteTemp { path, source } => {
            assert!(path.starts_with(&missing), "{path:?}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected WriteTemp, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );
    assert!(!missing.exists());
}

#[test]
fn save_to_a_path_without_file_name_is_a_typed_error() {
    let err = StateFile::new("/").save(&sample()).unwrap_err();
    assert!(matches!(err, StateFileError::NoFileName { .. }), "{err:?}");
}

#[test]
fn failed_rename_leaves_no_temp_file_and_keeps_the_target() {
    // The target is a non-empty directory, so the rename over it fails.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep"), b"x").unwrap();
    let err = StateFile::new(&path).save(&sample()).unwrap_err();
    assert!(matches!(err, StateFileError::Rename { .. }), "{err:?}");
    assert_eq!(entries(dir.path()), ["state.json"]);
    assert!(path.join("keep").exists());
}
