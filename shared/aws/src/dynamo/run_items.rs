//! What the AWS host needs beyond the ports: the attempts a run waits for and its armed timers,
//! an attempt read from the log, and the store scoped to another tenant.

use async_trait::async_trait;
use eventflow_engine::Checkpoint;
use eventflow_ports::{StoreResult, Task, TimerRecord};

use super::DynamoStore;
use crate::host::{AwsStore, RunItems};
use crate::messages::Logged;

#[async_trait]
impl RunItems for DynamoStore {
    async fn logged_task(
        &self,
        execution_id: &str,
        logged_at: u64,
        key: &str,
    ) -> StoreResult<Option<Task>> {
        DynamoStore::logged_task(self, execution_id, logged_at, key).await
    }

    async fn pending(&self, cp: &Checkpoint) -> StoreResult<(Vec<Logged>, Vec<TimerRecord>)> {
        let tasks = self.awaited_tasks(cp).await?;
        let timers = self
            .query_prefix(&self.pk_execution(&cp.execution_id), "TIMER#")
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
