//! Reading JSON documents (daemon answers, record views) without a panic path.

use serde_json::Value;

static NULL: Value = Value::Null;

/// The value at a JSON pointer (`/connectors/0/id`), or null when any step is missing or
/// of the wrong type: what `v["a"]["b"]` reads, without indexing.
pub fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&NULL)
}

/// The member `key` of an object, or null: `v[key]` for a key that is not a literal.
pub fn member<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&NULL)
}
