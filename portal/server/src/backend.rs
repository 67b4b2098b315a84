//! The portal's implementation of the pages' [`Backend`]; the REST API uses it too.

use async_trait::async_trait;
use cloudpulse_app::backend::{Backend, BackendError, DeploymentFilter};
use cloudpulse_app::model::{CloudStatus, DeploymentSummary, Page};
use cloudpulse_engine::{Store, StoreError};

use crate::cloud::CloudProbe;

pub struct PortalBackend {
    store: Store,
    cloud: CloudProbe,
}

impl PortalBackend {
    pub fn new(store: Store, cloud: CloudProbe) -> Self {
        PortalBackend { store, cloud }
    }
}

#[async_trait]
impl Backend for PortalBackend {
    fn cloud_status(&self) -> CloudStatus {
        self.cloud.current()
    }

    async fn recheck_cloud(&self) -> CloudStatus {
        self.cloud.check().await
    }

    async fn database_ok(&self) -> Result<(), BackendError> {
        self.store.ping().await.map_err(to_backend)
    }

    async fn list_deployments(
        &self,
        filter: DeploymentFilter,
    ) -> Result<Page<DeploymentSummary>, BackendError> {
        self.store
            .list_deployments(filter.status, filter.page, filter.per_page)
            .await
            .map_err(to_backend)
    }
}

fn to_backend(error: StoreError) -> BackendError {
    match error {
        StoreError::Invalid(message) => BackendError::Invalid(message),
        other => BackendError::Database(other.to_string()),
    }
}
