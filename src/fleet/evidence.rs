//! Evidence every replica publishes for the current analysis window of a route: cumulative
//! judged counts and latency histograms per version, tagged with the window they belong to,
//! and the leader's merge of them (see `docs/fleet.md#evidence`).
//!
//! Histograms travel in hdrhistogram's V2 serialisation, base64 in JSON. A replica's entry for
//! an older window never counts for the current one; a dead replica's entry expires with its
//! lease.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::metrics::ConnectCounts;
use crate::upstream::CONNECT_FAILURES;

/// Latencies are recorded in microseconds, 1 µs to 60 s, 3 significant digits: the same bounds
/// as every analysis window, so merging never clamps.
const LOWEST_MICROS: u64 = 1;
const HIGHEST_MICROS: u64 = 60_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// The uncompressed V2 serialisation, the only one canaryd writes: a 40-byte header (cookie,
/// payload length, …) and the payload.
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_HEADER_BYTES: usize = 40;

/// Why evidence could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Not valid JSON of the expected shape.
    #[error("evidence is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The histogram field is not base64.
    #[error("evidence histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The histogram bytes are not a V2 histogram.
    #[error("evidence histogram does not decode: {0:?}")]
    Histogram(hdrhistogram::serialization::DeserializeError),
    /// The histogram is not an uncompressed V2 one whose header says the length it has.
    #[error("evidence histogram is not an uncompressed V2 histogram of its stated length")]
    NotV2,
    /// Serialising failed (only on impossible histograms).
    #[error("evidence histogram does not encode: {0:?}")]
    Encode(hdrhistogram::serialization::V2SerializeError),
    /// The histogram bounds are invalid (constants: never).
    #[error("cannot create a histogram: {0}")]
    Create(#[from] hdrhistogram::CreationError),
}

/// One version's cumulative judged requests in a window.
#[derive(Debug, Clone)]
pub struct Counts {
    /// Judged requests.
    pub requests: u64,
    /// Failures among them.
    pub failures: u64,
    /// Latency of each judged request, microseconds.
    pub latency: Histogram<u64>,
    /// The failures that were failed connects, by kind: what lets a fleet rollback name why
    /// (docs/operations.md#why-a-canary-was-rolled-back).
    pub connect: ConnectCounts,
}

impl Counts {
    /// Nothing yet.
    pub fn empty() -> Result<Counts, EvidenceError> {
        Ok(Counts {
            requests: 0,
            failures: 0,
            latency: Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)?,
            connect: ConnectCounts::default(),
        })
    }

    /// Add another replica's counts. Saturating: a peer's counts are data, and a member
    /// writing absurd ones must not overflow the leader's sum.
    pub fn add(&mut self, other: &Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.failures = self.failures.saturating_add(other.failures);
        self.connect.merge(&other.connect);
        for bucket in other.latency.iter_recorded() {
            self.latency
                .saturating_record_n(bucket.value_iterated_to(), bucket.count_at_value());
        }
    }
}

/// What one replica saw of one route's current window.
#[derive(Debug, Clone)]
pub struct StepEvidence {
    /// The fleet window these counts belong to (see [`super::RouteState::window`]).
    pub window: u64,
    /// The canary revision served.
    pub revision: String,
    /// The canary weight served (the step).
    pub weight: u8,
    /// The primary's requests.
    pub primary: Counts,
    /// The canary's requests.
    pub canary: Counts,
    /// The analysis's own cumulative evidence (opaque here: the analysis's serialised
    /// `StepEvidence`, docs/fleet.md#wire-format), counted since `judge_epoch`.
    pub judge: Option<serde_json::Value>,
    /// Which evidence period `judge` belongs to (see [`super::RouteState::evidence`]).
    pub judge_epoch: u64,
    /// The writer's [`super::WIRE_VERSION`]: `judge` is read only from the same version.
    pub wire: u32,
}

/// The fleet's total for a window: the sum of every live member's evidence for it.
#[derive(Debug, Clone)]
pub struct MergedEvidence {
    /// The primary's requests, fleet-wide.
    pub primary: Counts,
    /// The canary's requests, fleet-wide.
    pub canary: Counts,
    /// Replicas whose evidence is in the sum.
    pub replicas: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct WireCounts {
    requests: u64,
    failures: u64,
    /// V2 histogram, base64.
    latency: String,
    /// Failed connects by kind (`canaryd_upstream_connect_failures_total`'s `cause` labels),
    /// only the kinds seen. Absent from older members; a kind this member does not know is
    /// left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    connect: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct WireEvidence {
    window: u64,
    revision: String,
    weight: u8,
    /// [`super::WIRE_VERSION`] of the writer; absent (1) before it was written.
    #[serde(default = "first_wire")]
    wire: u32,
    primary: WireCounts,
    canary: WireCounts,
    #[serde(default)]
    judge: Option<serde_json::Value>,
    #[serde(default)]
    judge_epoch: u64,
}

fn first_wire() -> u32 {
    1
}

fn encode_counts(counts: &Counts) -> Result<WireCounts, EvidenceError> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(&counts.latency, &mut bytes)
        .map_err(EvidenceError::Encode)?;
    Ok(WireCounts {
        requests: counts.requests,
        failures: counts.failures,
        latency: base64::engine::general_purpose::STANDARD.encode(bytes),
        connect: counts
            .connect
            .kinds()
            .into_iter()
            .map(|(kind, n)| (kind.label().to_owned(), n))
            .collect(),
    })
}

/// hdrhistogram's decoder allocates the payload length a header states before reading the
/// payload (a compressed one: before inflating it), so a peer's 60-byte entry could make the
/// leader allocate 4 GiB: the header must state exactly the bytes that follow it.
fn check_v2_header(bytes: &[u8]) -> Result<(), EvidenceError> {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };
    let stated = word(4).and_then(|n| usize::try_from(n).ok());
    let payload = bytes.len().checked_sub(V2_HEADER_BYTES);
    match (word(0), stated, payload) {
        (Some(V2_COOKIE), Some(stated), Some(payload)) if stated == payload => Ok(()),
        _ => Err(EvidenceError::NotV2),
    }
}

fn decode_counts(wire: &WireCounts) -> Result<Counts, EvidenceError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(&wire.latency)?;
    check_v2_header(&bytes)?;
    let decoded: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(EvidenceError::Histogram)?;
    // Re-record into the standard bounds: a peer's histogram is data, not trusted shape.
    let mut counts = Counts::empty()?;
    counts.requests = wire.requests;
    counts.failures = wire.failures.min(wire.requests);
    for kind in CONNECT_FAILURES {
        if let Some(n) = wire.connect.get(kind.label()) {
            // Failed connects are failures: a peer cannot claim more of them.
            counts.connect.add_n(kind, (*n).min(counts.failures));
        }
    }
    for bucket in decoded.iter_recorded() {
        counts
            .latency
            .saturating_record_n(bucket.value_iterated_to(), bucket.count_at_value());
    }
    Ok(counts)
}

impl StepEvidence {
    /// Nothing seen yet for `window`.
    pub fn empty(window: u64, revision: &str, weight: u8) -> Result<StepEvidence, EvidenceError> {
        Ok(StepEvidence {
            window,
            revision: revision.to_owned(),
            weight,
            primary: Counts::empty()?,
            canary: Counts::empty()?,
            judge: None,
            judge_epoch: 0,
            wire: super::WIRE_VERSION,
        })
    }

    /// The JSON stored in etcd.
    pub fn encode(&self) -> Result<Vec<u8>, EvidenceError> {
        let wire = WireEvidence {
            window: self.window,
            revision: self.revision.clone(),
            weight: self.weight,
            wire: super::WIRE_VERSION,
            primary: encode_counts(&self.primary)?,
            canary: encode_counts(&self.canary)?,
            judge: self.judge.clone(),
            judge_epoch: self.judge_epoch,
        };
        Ok(serde_json::to_vec(&wire)?)
    }

    /// Parse what [`StepEvidence::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<StepEvidence, EvidenceError> {
        let wire: WireEvidence = serde_json::from_slice(bytes)?;
        Ok(StepEvidence {
            window: wire.window,
            revision: wire.revision,
            weight: wire.weight,
            primary: decode_counts(&wire.primary)?,
            canary: decode_counts(&wire.canary)?,
            judge: wire.judge,
            judge_epoch: wire.judge_epoch,
            wire: wire.wire,
        })
    }
}

impl MergedEvidence {
    /// Sum the entries of `window` for `revision`; entries of another window or revision (a
    /// lagging replica) are left out.
    pub fn merge<'a>(
        window: u64,
        revision: &str,
        entries: impl IntoIterator<Item = (&'a str, &'a StepEvidence)>,
    ) -> Result<MergedEvidence, EvidenceError> {
        let mut merged = MergedEvidence {
            primary: Counts::empty()?,
            canary: Counts::empty()?,
            replicas: Vec::new(),
        };
        for (replica, evidence) in entries {
            if evidence.window != window || evidence.revision != revision {
                continue;
            }
            merged.primary.add(&evidence.primary);
            merged.canary.add(&evidence.canary);
            merged.replicas.push(replica.to_owned());
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn evidence(window: u64, requests: u64, failures: u64, latency: u64) -> StepEvidence {
        let mut e = StepEvidence::empty(window, "v2", 10).unwrap();
        e.canary.requests = requests;
        e.canary.failures = failures;
        e.canary.latency.saturating_record_n(latency, requests);
        e.primary.requests = requests * 9;
        e.primary.latency.saturating_record_n(latency, requests * 9);
        e
    }

    #[test]
    fn round_trips_through_json_and_merges_only_the_current_window() {
        let a = StepEvidence::decode(&evidence(3, 100, 1, 2_000).encode().unwrap()).unwrap();
        let b = StepEvidence::decode(&evidence(3, 50, 0, 90_000).encode().unwrap()).unwrap();
        let stale = StepEvidence::decode(&evidence(2, 1000, 1000, 5).encode().unwrap()).unwrap();
        assert_eq!(a.canary.requests, 100);
        assert_eq!(a.canary.latency.len(), 100);
        let merged =
            MergedEvidence::merge(3, "v2", [("a", &a), ("b", &b), ("old", &stale)]).unwrap();
        assert_eq!(merged.canary.requests, 150);
        assert_eq!(merged.canary.failures, 1);
        assert_eq!(merged.primary.requests, 1350);
        assert_eq!(merged.replicas, ["a", "b"]);
        // One third of the canary's requests took 90 ms: the fleet's P99 shows it.
        let p99 = merged.canary.latency.value_at_quantile(0.99);
        assert!((89_000..=91_000).contains(&p99), "{p99}");
    }

    #[test]
    fn connect_kinds_travel_by_label_and_merge() {
        use crate::upstream::ConnectFailure;
        let mut a = evidence(3, 100, 40, 2_000);
        a.canary.connect.add_n(ConnectFailure::Refused, 30);
        a.canary.connect.add_n(ConnectFailure::Dns, 5);
        let json: serde_json::Value = serde_json::from_slice(&a.encode().unwrap()).unwrap();
        assert_eq!(json["canary"]["connect"]["refused"], 30);
        assert!(
            json["primary"].get("connect").is_none(),
            "none seen: absent"
        );
        let a = StepEvidence::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
        let mut b = evidence(3, 50, 50, 2_000);
        b.canary.connect.add_n(ConnectFailure::Refused, 50);
        let b = StepEvidence::decode(&b.encode().unwrap()).unwrap();
        let merged = MergedEvidence::merge(3, "v2", [("a", &a), ("b", &b)]).unwrap();
        assert_eq!(merged.canary.connect.of(ConnectFailure::Refused), 80);
        assert_eq!(merged.canary.connect.of(ConnectFailure::Dns), 5);
        assert_eq!(merged.canary.connect.total(), 85);

        // An older member writes none; a newer one may name a kind this one does not know; a
        // peer cannot claim more failed connects than failures.
        let peer = br#"{"window":3,"revision":"v2","weight":10,
            "primary":{"requests":0,"failures":0,"latency":"LATENCY"},
            "canary":{"requests":10,"failures":4,"latency":"LATENCY",
                      "connect":{"refused":1000,"quantum_tunnel":3}}}"#;
        let latency = json["canary"]["latency"].as_str().unwrap();
        let peer = String::from_utf8(peer.to_vec())
            .unwrap()
            .replace("LATENCY", latency);
        let peer = StepEvidence::decode(peer.as_bytes()).unwrap();
        assert_eq!(peer.canary.connect.of(ConnectFailure::Refused), 4);
        assert_eq!(peer.canary.connect.total(), 4);
    }

    #[test]
    fn a_histogram_header_must_state_the_length_it_has() {
        let good = evidence(3, 100, 1, 2_000).encode().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&good).unwrap();
        let latency = json["canary"]["latency"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(latency)
            .unwrap();
        assert!(check_v2_header(&bytes).is_ok());
        // A header claiming 4 GiB of payload, with only the real payload behind it.
        let mut claims_more = bytes.clone();
        claims_more[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            check_v2_header(&claims_more),
            Err(EvidenceError::NotV2)
        ));
        let mut compressed = bytes.clone();
        compressed[0..4].copy_from_slice(&0x1c84_9314u32.to_be_bytes());
        assert!(check_v2_header(&compressed).is_err());
        assert!(check_v2_header(&bytes[..39]).is_err());
        let forged = base64::engine::general_purpose::STANDARD.encode(&claims_more);
        let text = String::from_utf8(good).unwrap().replace(latency, &forged);
        assert!(matches!(
            StepEvidence::decode(text.as_bytes()),
            Err(EvidenceError::NotV2)
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(StepEvidence::decode(b"{}").is_err());
        let bad = br#"{"window":1,"revision":"v2","weight":1,
            "primary":{"requests":1,"failures":0,"latency":"!!"},
            "canary":{"requests":1,"failures":0,"latency":"AAAA"}}"#;
        assert!(StepEvidence::decode(bad).is_err());
    }
}
