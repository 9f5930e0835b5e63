//! Hourly usage roll-ups, as a store capability of their own.

use async_trait::async_trait;

use super::StoreError;
use crate::control::usage::model::{UsageDelta, UsageFilter, UsageKey, UsageRow};

#[async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug + 'static {
    /// Adds every delta to its row in one transaction (peaks keep the maximum).
    async fn add_usage(&self, deltas: &[(UsageKey, UsageDelta)]) -> Result<(), StoreError>;
    /// Oldest hour first.
    async fn usage(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>, StoreError>;
}
