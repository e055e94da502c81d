//! What the AWS host needs beyond the ports: one run's pending attempts and timers, and the
//! store scoped to another tenant.

use async_trait::async_trait;
use eventflow_ports::{StoreResult, Task, TimerRecord};

use super::DynamoStore;
use crate::host::{AwsStore, RunItems};

#[async_trait]
impl RunItems for DynamoStore {
    async fn task(&self, execution_id: &str, key: &str) -> StoreResult<Option<Task>> {
        let item = self
            .get_item(&self.pk_execution(execution_id), &format!("TASK#{key}"))
            .await?;
        item.map(|i| self.body(&i)).transpose()
    }

    async fn pending(&self, execution_id: &str) -> StoreResult<(Vec<Task>, Vec<TimerRecord>)> {
        let pk = self.pk_execution(execution_id);
        let tasks = self
            .query_prefix(&pk, "TASK#")
            .await?
            .iter()
            .map(|i| self.body(i))
            .collect::<StoreResult<Vec<Task>>>()?;
        let timers = self
            .query_prefix(&pk, "TIMER#")
            .await?
            .iter()
            .map(|i| self.body(i))
            .collect::<StoreResult<Vec<TimerRecord>>>()?;
        Ok((tasks, timers))
    }
}

impl AwsStore for DynamoStore {
    fn for_tenant(&self, tenant: &str) -> Self {
        DynamoStore::for_tenant(self, tenant)
    }

    fn tenant(&self) -> &str {
        self.tenant_name()
    }
}
