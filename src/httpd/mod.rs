//! The HTTP server side shared by every stage that answers HTTP (delivery,
//! the admin API, WHIP): the accept loop with its timeouts and connection
//! caps, the request timeout, bearer-token parsing and URI redaction for
//! spans. Per-client counting is `crate::slots`, shared with RTMP.
//!
//! A leaf like `logging`: it imports nothing of ours but `logging` and
//! `slots`, so
//! control (the admin API) and ingest (WHIP) both use [`bearer_token`]
//! without an arrow running between them.

mod bearer;
mod listener;
mod redact;
mod timeout;

pub use bearer::bearer_token;
pub use listener::{check_open_file_limit, serve, ListenerSettings};
pub use redact::redacted_uri;
pub use timeout::with_request_timeout;
