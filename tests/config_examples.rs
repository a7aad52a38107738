//! Every example in `config/` is accepted by the same loader `canaryd check` uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn every_example_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = canaryd::config::load_file(&path) {
                panic!("{e}");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 7,
        "expected the example configs, found {checked}"
    );
}
