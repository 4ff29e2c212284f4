//! The metric catalogue: every metric name the gateway records, in one place.
//! Labels are bounded (provider, outcome, route pattern, job, key id); never an
//! email, a credential id or a raw path.

/// Histogram, seconds: sealing one value.
pub const ENCRYPTION_DURATION: &str = "encryption_duration_seconds";
/// Histogram, seconds: opening one value.
pub const DECRYPTION_DURATION: &str = "decryption_duration_seconds";
/// Counter, label `operation`: values that failed to decrypt (wrong key, tampering, moved value).
pub const ENCRYPTION_ERRORS: &str = "encryption_error_total";
