//! Configuration: reads one TOML file, validates every rule of docs/configuration.md#validation-rules, and yields an
//! immutable [`Config`]. Knows nothing of routing, proxying or analysis.

mod analysis;
mod error;
mod external;
mod fleet;
mod raw;
mod routes;
mod tls;
mod traffic;
mod types;
mod validate;
mod webhook;

pub use error::ConfigError;
pub use fleet::{FleetConfig, FleetTls};
pub use types::*;
pub use validate::{load_file, load_file_unread, parse_str};
