//! revsync connector for any REST API (`type: rest`), declared entirely in the connector's
//! YAML: auth, each object's list request, record selector, paging, incremental read, writes
//! and signed webhooks. Also (feature `sim`) a webinar platform simulator to run it against.

#[cfg(feature = "sim")]
pub mod sim;
