//! revsync-sdk: the contract between the revsync daemon and its connectors.
//!
//! Connectors depend on this crate and never on the daemon. It holds the canonical
//! vocabulary (kinds), the secret type every credential travels in, and the
//! description a connector type gives of itself so the daemon can validate its
//! configuration before anything runs.

pub mod connector;
pub mod describe;
pub mod error;
pub mod http;
pub mod model;
mod schema;
pub mod secret;
pub mod shutdown;
#[cfg(feature = "sim")]
pub mod simfault;
pub mod sync;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use connector::{
    check_base_url, check_range, check_timeout_ms, collected, parse_params, BuildContext,
    ConnectorType, ObjectDecl, ParamError, MAX_WINDOW_SECS, TIMEOUT_MS_RANGE,
};
pub use describe::{FieldSchema, ObjectSchema};
pub use error::{upstream_wait, ConnectorError, LimitScope, MAX_UPSTREAM_WAIT};
pub use model::{
    canonical_id_in, Change, FieldDef, FieldEntry, FieldType, Kind, Link, Provenance, Record, Value,
};
pub use secret::Secret;
pub use shutdown::Shutdown;
pub use sync::{
    answer, cursor_text, fingerprint, Capabilities, Connector, Fetched, Inbound, ObjectCapability,
    PushItem, PushOp, PushResult, QuotaLeft, Rejected, WebhookAck, WebhookError, WebhookEvent,
    WebhookRequest,
};
