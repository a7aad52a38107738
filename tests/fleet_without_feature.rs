//! A binary built without the `fleet` feature refuses a config with `[fleet]` at start, saying
//! how to build one that has it (docs/fleet.md#building), instead of running alone.
#![cfg(not(feature = "fleet"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn run_with_fleet_config_fails_with_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("canaryd.toml");
    std::fs::write(
        &config,
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [fleet]\nname = \"edge\"\netcd = [\"http://127.0.0.1:1\"]\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["run", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("built without fleet support"), "{stderr}");
    assert!(stderr.contains("--features fleet"), "{stderr}");
    // `check` accepts the same file: the config is valid, only this build cannot run it.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
