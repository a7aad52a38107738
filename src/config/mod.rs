//! Configuration: reads one TOML file, validates every rule of docs/configuration.md#validation-rules, and yields an
//! immutable [`Config`]. Knows nothing of routing, proxying or analysis.

mod analysis;
mod error;
mod external;
mod failures;
mod fleet;
mod hints;
mod raw;
mod routes;
mod tls;
mod traffic;
mod types;
mod upstream;
mod validate;
mod webhook;

pub use error::ConfigError;
pub use failures::{FailurePolicy, GRPC_CODE_NAMES};
pub use fleet::{FleetConfig, FleetTls};
pub use types::*;
pub use upstream::{ClientPem, UpstreamProtocol, UpstreamTlsConfig, UpstreamTransport};
pub use validate::{load_file, load_file_unread, parse_str};
