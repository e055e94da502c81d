//! The in-process task queue: what the driver dispatches, the worker pool takes.
//!
//! On AWS the same port is a set of SQS queues; here it is an unbounded channel whose
//! receiver the workers share.

use std::sync::Arc;

use async_trait::async_trait;
use eventflow_ports::{StoreError, StoreResult, Task, TaskQueue};
use tokio::sync::{Mutex, mpsc};

/// The sending side, handed to the driver.
#[derive(Debug, Clone)]
pub struct InProcessQueue {
    tx: mpsc::UnboundedSender<Task>,
}

/// The receiving side, shared by the workers.
pub type TaskReceiver = Arc<Mutex<mpsc::UnboundedReceiver<Task>>>;

impl InProcessQueue {
    pub fn new() -> (InProcessQueue, TaskReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (InProcessQueue { tx }, Arc::new(Mutex::new(rx)))
    }
}

/// Takes the next task; `None` once the queue is closed.
pub async fn next(rx: &TaskReceiver) -> Option<Task> {
    rx.lock().await.recv().await
}

#[async_trait]
impl TaskQueue for InProcessQueue {
    async fn send(&self, tasks: Vec<Task>) -> StoreResult<()> {
        for task in tasks {
            self.tx
                .send(task)
                .map_err(|_| StoreError::Unavailable("the worker pool has stopped".into()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventflow_engine::Command;

    fn task(key: &str) -> Task {
        Task {
            execution_id: "ex".into(),
            workflow_id: "w".into(),
            version: 1,
            command: Command::RunStep {
                key: key.into(),
                step: "a".into(),
                item: None,
                attempt: 1,
                action: "notify".into(),
                input: serde_json::Value::Null,
                timeout: None,
            },
            redelivered: false,
        }
    }

    #[tokio::test]
    async fn tasks_come_out_in_the_order_they_went_in() {
        let (q, rx) = InProcessQueue::new();
        q.send(vec![task("k1"), task("k2")]).await.expect("send");
        assert_eq!(
            next(&rx).await.map(|t| t.key().to_owned()),
            Some("k1".into())
        );
        assert_eq!(
            next(&rx).await.map(|t| t.key().to_owned()),
            Some("k2".into())
        );
    }
}
