pub mod budget;
pub mod deployment;
pub mod deployments;
pub mod edit;
pub mod instance;
pub mod live;
pub mod new;
pub mod reports;
