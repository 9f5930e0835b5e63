//! Pull sources, as a store capability of their own.

use async_trait::async_trait;

use super::StoreError;
use crate::control::sources::model::Source;

#[async_trait]
pub trait SourceStore: Send + Sync + std::fmt::Debug + 'static {
    async fn create_source(&self, source: &Source) -> Result<(), StoreError>;
    async fn source(&self, id: &str) -> Result<Option<Source>, StoreError>;
    /// All apps when `app_id` is `None`; oldest first.
    async fn sources(&self, app_id: Option<&str>) -> Result<Vec<Source>, StoreError>;
    async fn set_source_enabled(&self, id: &str, enabled: bool) -> Result<bool, StoreError>;
    async fn set_source_state(
        &self,
        id: &str,
        state: &str,
        last_error: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError>;
    async fn delete_source(&self, id: &str) -> Result<bool, StoreError>;
}
