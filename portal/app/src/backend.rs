//! The server side of the portal as the pages see it.
//!
//! Server functions run on the server but live in this crate, which must not
//! know about sqlx or the AWS SDK. They reach the portal through this trait;
//! the server crate implements it and provides it as Leptos context, and its
//! REST API calls the same implementation, so the UI and the API cannot drift.

use std::sync::Arc;

use async_trait::async_trait;
use leptos::prelude::*;

use crate::model::{CloudStatus, DeploymentStatus, DeploymentSummary, Page};

/// Why a backend call failed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Invalid(String),
    #[error("the database failed: {0}")]
    Database(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentFilter {
    pub status: Option<DeploymentStatus>,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The last known state of the cloud connection; never waits on AWS.
    fn cloud_status(&self) -> CloudStatus;

    /// Asks the cloud again now and returns the fresh state.
    async fn recheck_cloud(&self) -> CloudStatus;

    /// A cheap round trip to the database, for health checks.
    async fn database_ok(&self) -> Result<(), BackendError>;

    async fn list_deployments(
        &self,
        filter: DeploymentFilter,
    ) -> Result<Page<DeploymentSummary>, BackendError>;
}

/// What the server puts into Leptos context.
pub type SharedBackend = Arc<dyn Backend>;

pub fn use_backend() -> Result<SharedBackend, ServerFnError> {
    use_context::<SharedBackend>()
        .ok_or_else(|| ServerFnError::new("the portal backend is not available in this context"))
}
