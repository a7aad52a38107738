//! How a [`Phase`] is written to the state file: its documented name (`"Progressing"`), so the file
//! stays readable and `Phase` (owned by the data plane) needs no serde dependency.

use serde::{de, Deserialize, Deserializer, Serializer};

use crate::routing::Phase;

/// Serialize a phase as its name.
pub(in crate::analysis) fn serialize<S: Serializer>(
    phase: &Phase,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(phase.as_str())
}

/// Read a phase from its name; an unknown name is an error, so a corrupt state file is moved
/// aside rather than half-trusted.
pub(in crate::analysis) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Phase, D::Error> {
    let name = String::deserialize(deserializer)?;
    Phase::ALL
        .into_iter()
        .find(|phase| phase.as_str() == name)
        .ok_or_else(|| de::Error::custom(format!("unknown phase {name:?}")))
}
