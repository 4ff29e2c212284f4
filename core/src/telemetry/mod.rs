//! What the core tells operators: the metric catalogue (names, types,
//! labels, help) and the id of the request being served, which audit records
//! and logs carry. Installing the recorder and rendering `/metrics` is the
//! gateway's (`gateway::telemetry`).

pub mod metrics;
pub mod request_id;
