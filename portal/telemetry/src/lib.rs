//! Telemetry: what a live deployment is doing, what it costs, how well it stays up.
//!
//! A poller per live deployment reads the Auto Scaling group, target health,
//! alarm states, scaling activities and CloudWatch metrics on a fixed cadence
//! (one batched `GetMetricData` per cycle), stores samples in SQLite with
//! retention, and turns every change into an event on the deployment's
//! timeline. Cost accrues with `cloudpulse_app::pricing`, the module the
//! estimate uses too.
//!
//! It reads AWS and writes the database; it never creates or deletes AWS
//! resources (that is the engine's job) and never renders anything.
