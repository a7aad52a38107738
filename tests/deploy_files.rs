//! The deployment files under `deploy/` parse: every YAML document is a Kubernetes object or a
//! compose file, every canaryd config they carry is accepted by canaryd's own loader, and the
//! Grafana dashboard is JSON with panels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every file under `dir` (recursively) whose name ends with one of `suffixes`, sorted.
fn files(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| suffixes.iter().any(|s| n.ends_with(s)))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The documents of a (multi-document) YAML file; empty documents are skipped.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn is_compose(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("compose"))
}

/// A string field of a document, or a panic naming the file and document.
fn string<'a>(doc: &'a Value, key: &str, what: &str) -> &'a str {
    doc[key]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: `{key}` missing or not a string"))
}

/// Validates one embedded canaryd config as if it were the file `name` in a scratch directory,
/// so relative paths in it resolve somewhere harmless. Line numbers in an error count from the
/// first line of the embedded text.
fn check_canaryd_toml(text: &str, name: &str, what: &str) -> canaryd::config::Config {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join(name);
    canaryd::config::parse_str(text, &source)
        .unwrap_or_else(|e| panic!("{what}: canaryd rejects the config: {e}"))
}

#[test]
fn kubernetes_manifests_and_compose_files_parse() {
    let yaml = files(&deploy_dir(), &[".yaml", ".yml"]);
    assert!(
        yaml.len() >= 3,
        "expected deploy/kubernetes/*.yaml and deploy/docker-compose.yml, found {yaml:?}"
    );
    let mut config_maps = 0;
    for path in &yaml {
        let docs = documents(path);
        assert!(!docs.is_empty(), "{}: no YAML document", path.display());
        for (i, doc) in docs.iter().enumerate() {
            let what = format!("{} document {}", path.display(), i + 1);
            if is_compose(path) {
                let services = doc["services"]
                    .as_mapping()
                    .unwrap_or_else(|| panic!("{what}: no `services` mapping"));
                assert!(!services.is_empty(), "{what}: no services");
                for (name, service) in services {
                    assert!(
                        !service["image"].is_null() || !service["build"].is_null(),
                        "{what}: service {name:?} has neither `image` nor `build`"
                    );
                }
                continue;
            }
            string(doc, "apiVersion", &what);
            let kind = string(doc, "kind", &what);
            let name = string(&doc["metadata"], "name", &what);
            if kind != "ConfigMap" {
                continue;
            }
            let data = doc["data"]
                .as_mapping()
                .unwrap_or_else(|| panic!("{what}: ConfigMap {name} has no `data`"));
            for (key, value) in data {
                let key = key.as_str().unwrap();
                if !key.ends_with(".toml") {
                    continue;
                }
                let what = format!("{what}: ConfigMap {name} key {key}");
                let text = value
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: not a string"));
                let config = check_canaryd_toml(text, &format!("{name}.{key}"), &what);
                // Kubelet probes and Prometheus reach the pod IP, never its loopback.
                assert!(
                    !config.admin.listen.ip().is_loopback(),
                    "{what}: admin.listen {} is loopback, so /readyz, /healthz and /metrics \
                     are unreachable from outside the pod",
                    config.admin.listen
                );
                config_maps += 1;
            }
        }
    }
    assert!(
        config_maps >= 2,
        "expected the canaryd ConfigMaps of sidecar.yaml and ingress.yaml, found {config_maps}"
    );
}

#[test]
fn compose_canaryd_config_is_valid() {
    let tomls = files(&deploy_dir(), &[".toml"]);
    assert!(!tomls.is_empty(), "expected deploy/compose/canaryd.toml");
    for path in tomls {
        if let Err(e) = canaryd::config::load_file(&path) {
            panic!("{e}");
        }
    }
}

#[test]
fn grafana_dashboard_has_panels() {
    let path = deploy_dir().join("grafana").join("canaryd.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let panels = dashboard["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no `panels` array", path.display()));
    assert!(!panels.is_empty(), "{}: `panels` is empty", path.display());
}

/// The `[fleet]` of the one canaryd ConfigMap in a manifest.
fn config_map_fleet(path: &Path) -> canaryd::config::FleetConfig {
    let docs = documents(path);
    let text = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .find_map(|d| d["data"]["canaryd.toml"].as_str())
        .unwrap_or_else(|| panic!("{}: no canaryd.toml ConfigMap", path.display()));
    let config = check_canaryd_toml(text, "canaryd.toml", &path.display().to_string());
    config
        .fleet
        .unwrap_or_else(|| panic!("{}: the canaryd config has no [fleet]", path.display()))
}

fn deployment<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Deployment {name}"))
}

#[test]
fn deploy_files_run_several_replicas_as_one_fleet() {
    let kubernetes = deploy_dir().join("kubernetes");

    // Ingress: 3 replicas, rolled one at a time, one fleet.
    let ingress = kubernetes.join("ingress.yaml");
    let fleet = config_map_fleet(&ingress);
    assert!(fleet.etcd.len() >= 3, "{fleet:?}");
    let docs = documents(&ingress);
    let canaryd = deployment(&docs, "canaryd");
    assert!(canaryd["spec"]["replicas"].as_u64().unwrap() >= 3);
    assert_eq!(canaryd["spec"]["strategy"]["type"], "RollingUpdate");
    assert!(
        !docs.iter().any(|d| d["kind"] == "PersistentVolumeClaim"),
        "a fleet keeps its state in etcd; one RWO volume cannot serve several replicas"
    );

    // Sidecar: every pod of the app Deployment is a member of one fleet.
    let sidecar = kubernetes.join("sidecar.yaml");
    config_map_fleet(&sidecar);
    let docs = documents(&sidecar);
    assert!(
        deployment(&docs, "shop")["spec"]["replicas"]
            .as_u64()
            .unwrap()
            >= 2
    );

    // Compose: a 3-member etcd cluster and two canaryds with distinct host names (their
    // replica ids) sharing one fleet config.
    let compose = documents(&deploy_dir().join("docker-compose.yml"));
    let services = compose[0]["services"].as_mapping().unwrap();
    let named = |prefix: &str| -> Vec<&Value> {
        services
            .iter()
            .filter(|(k, _)| k.as_str().is_some_and(|k| k.starts_with(prefix)))
            .map(|(_, v)| v)
            .collect()
    };
    let etcd = named("etcd-");
    assert_eq!(etcd.len(), 3, "three etcd members");
    for member in &etcd {
        let command: Vec<&str> = member["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let cluster = command
            .iter()
            .find(|a| a.starts_with("--initial-cluster="))
            .unwrap();
        assert_eq!(cluster.matches("=http://").count(), 3, "{cluster}");
    }
    let replicas = named("canaryd-");
    assert!(replicas.len() >= 2, "at least two canaryd replicas");
    let mut hostnames: Vec<&str> = replicas
        .iter()
        .map(|r| r["hostname"].as_str().unwrap())
        .collect();
    hostnames.sort_unstable();
    hostnames.dedup();
    assert_eq!(hostnames.len(), replicas.len(), "replica ids must differ");
    let compose_config =
        canaryd::config::load_file(&deploy_dir().join("compose").join("canaryd.toml")).unwrap();
    let fleet = compose_config
        .fleet
        .expect("deploy/compose/canaryd.toml has [fleet]");
    for member in ["etcd-0", "etcd-1", "etcd-2"] {
        assert!(
            fleet.etcd.iter().any(|e| e.contains(member)),
            "{member} missing from {:?}",
            fleet.etcd
        );
    }
}
