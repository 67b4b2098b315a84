pub mod deployment;
pub mod deployments;
pub mod new;
