//! The client-side fast path for plain HTTP/1.1 keep-alive
//! (docs/performance.md#the-client-side-fast-path): a request head classified from the bytes
//! the rounds loop holds (`head.rs`), so that a simple request can be served without hyper's
//! server and without a `HeaderMap`, and anything else goes to hyper before a byte of it is
//! consumed.

pub(crate) mod answer;
mod date;
mod fields;
pub(crate) mod head;
pub(crate) mod respond;
pub(crate) mod rewrite;
pub mod serve;
