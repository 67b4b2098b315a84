//! One module per page.

pub mod deployments;
