//! [`VersionStore`] on the table: `V#<n>` items (never overwritten), `HASH#<sha256>` items
//! finding a version by its content, the `ALIAS` item and the `<t>#WORKFLOWS` list.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use eventflow_engine::{Definition, Timestamp};
use eventflow_ports::{
    Alias, Canary, StoreError, StoreResult, VersionRecord, VersionState, VersionStore,
};

use super::{
    DynamoStore, Item, ReturnConsumedCapacity, check_size, is_conditional, key, n, put_request, s,
};

/// How many numbers a publisher tries when others keep taking the next one first.
const PUBLISH_ATTEMPTS: u32 = 64;

fn version_sk(number: u32) -> String {
    format!("V#{number:010}")
}

fn state_name(state: VersionState) -> &'static str {
    match state {
        VersionState::Active => "active",
        VersionState::Deprecated => "deprecated",
        VersionState::Retired => "retired",
    }
}

impl DynamoStore {
    fn workflows_pk(&self) -> String {
        format!("{}#WORKFLOWS", self.tenant)
    }

    fn version_from(&self, item: &Item) -> StoreResult<VersionRecord> {
        let published_at = self.attr_s(item, "published_at")?;
        let published_at = DateTime::parse_from_rfc3339(published_at)
            .map_err(|e| self.malformed(item, format!("`published_at`: {e}")))?
            .with_timezone(&Utc);
        Ok(VersionRecord {
            workflow_id: self.attr_s(item, "workflow")?.to_owned(),
            number: self.attr_n(item, "number")?,
            hash: self.attr_s(item, "hash")?.to_owned(),
            definition: self.attr_json(item, "definition")?,
            published_at,
        })
    }

    fn state_from(&self, item: &Item) -> StoreResult<VersionState> {
        match item.get("state") {
            None => Ok(VersionState::Active),
            Some(_) => match self.attr_s(item, "state")? {
                "active" => Ok(VersionState::Active),
                "deprecated" => Ok(VersionState::Deprecated),
                "retired" => Ok(VersionState::Retired),
                other => Err(self.malformed(item, format!("unknown state `{other}`"))),
            },
        }
    }

    fn version_item(&self, record: &VersionRecord) -> StoreResult<Item> {
        let pk = self.pk_workflow(&record.workflow_id);
        let sk = version_sk(record.number);
        let definition = serde_json::to_string(&record.definition).map_err(StoreError::backend)?;
        check_size(&pk, &sk, definition.len())?;
        let mut item = key(&pk, &sk);
        item.insert("workflow".into(), s(&record.workflow_id));
        item.insert("number".into(), n(record.number));
        item.insert("hash".into(), s(&record.hash));
        item.insert("definition".into(), s(definition));
        item.insert(
            "published_at".into(),
            s(record
                .published_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        );
        item.insert("state".into(), s(state_name(VersionState::Active)));
        Ok(item)
    }

    async fn by_hash(&self, workflow_id: &str, hash: &str) -> StoreResult<Option<VersionRecord>> {
        let pk = self.pk_workflow(workflow_id);
        let Some(item) = self.get_item(&pk, &format!("HASH#{hash}")).await? else {
            return Ok(None);
        };
        let number: u32 = self.attr_n(&item, "number")?;
        self.version(workflow_id, number).await
    }
}

#[async_trait]
impl VersionStore for DynamoStore {
    /// Looks the hash up; otherwise puts `V#<latest + 1>` under `attribute_not_exists(pk)`.
    /// A publisher that loses the number to another tries the next one (or, when the winner
    /// published the same content, returns the winner's version). The hash and the workflow
    /// list items follow the version.
    async fn publish(
        &self,
        definition: &Definition,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<VersionRecord> {
        let wf = definition.id.as_str();
        if let Some(existing) = self.by_hash(wf, hash).await? {
            return Ok(existing);
        }
        let mut number = self.latest(wf).await?.map_or(0, |v| v.number) + 1;
        let mut record = VersionRecord {
            workflow_id: wf.to_owned(),
            number,
            hash: hash.to_owned(),
            definition: definition.clone(),
            published_at: now,
        };
        for _ in 0..PUBLISH_ATTEMPTS {
            record.number = number;
            if self.put_new(self.version_item(&record)?).await? {
                let pk = self.pk_workflow(wf);
                let mut by_hash = key(&pk, &format!("HASH#{hash}"));
                by_hash.insert("number".into(), n(number));
                let mut listed = key(&self.workflows_pk(), wf);
                listed.insert("workflow".into(), s(wf));
                self.batch_write(vec![put_request(by_hash)?, put_request(listed)?])
                    .await?;
                return Ok(record);
            }
            // Another publisher took this number: same content, or try the next one.
            if let Some(theirs) = self.version(wf, number).await?
                && theirs.hash == hash
            {
                return Ok(theirs);
            }
            number += 1;
        }
        Err(StoreError::Conflict(format!(
            "workflow {wf}: other publishers took {PUBLISH_ATTEMPTS} version numbers in a row; publish again"
        )))
    }

    async fn version(&self, workflow_id: &str, number: u32) -> StoreResult<Option<VersionRecord>> {
        let item = self
            .get_item(&self.pk_workflow(workflow_id), &version_sk(number))
            .await?;
        item.map(|i| self.version_from(&i)).transpose()
    }

    async fn latest(&self, workflow_id: &str) -> StoreResult<Option<VersionRecord>> {
        let items = self
            .query_range(
                &self.pk_workflow(workflow_id),
                "V#",
                "V#\u{10FFFF}",
                false,
                Some(1),
            )
            .await?;
        items.first().map(|i| self.version_from(i)).transpose()
    }

    async fn workflows(&self) -> StoreResult<Vec<String>> {
        let items = self.query_prefix(&self.workflows_pk(), "").await?;
        items
            .iter()
            .map(|i| self.attr_s(i, "sk").map(str::to_owned))
            .collect()
    }

    async fn versions(&self, workflow_id: &str) -> StoreResult<Vec<(VersionRecord, VersionState)>> {
        let items = self
            .query_prefix(&self.pk_workflow(workflow_id), "V#")
            .await?;
        items
            .iter()
            .map(|i| Ok((self.version_from(i)?, self.state_from(i)?)))
            .collect()
    }

    async fn state(&self, workflow_id: &str, number: u32) -> StoreResult<VersionState> {
        match self
            .get_item(&self.pk_workflow(workflow_id), &version_sk(number))
            .await?
        {
            Some(item) => self.state_from(&item),
            None => Ok(VersionState::Active),
        }
    }

    /// Updates the version item's `state` alone (its definition is never written again).
    async fn set_state(
        &self,
        workflow_id: &str,
        number: u32,
        state: VersionState,
    ) -> StoreResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key("pk", s(self.pk_workflow(workflow_id)))
            .key("sk", s(version_sk(number)))
            .update_expression("SET #state = :state")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state_name(state)))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.usage.write(out.consumed_capacity());
                Ok(())
            }
            Err(e) if is_conditional(&e) => Err(StoreError::Conflict(format!(
                "{workflow_id} has no version {number}"
            ))),
            Err(e) => Err(self.call_error("UpdateItem", e)),
        }
    }

    async fn alias(&self, workflow_id: &str) -> StoreResult<Option<Alias>> {
        let Some(item) = self
            .get_item(&self.pk_workflow(workflow_id), "ALIAS")
            .await?
        else {
            return Ok(None);
        };
        let canary = match item.get("canary_version") {
            Some(_) => Some(Canary {
                version: self.attr_n(&item, "canary_version")?,
                weight: self.attr_n(&item, "canary_weight")?,
            }),
            None => None,
        };
        Ok(Some(Alias {
            workflow_id: workflow_id.to_owned(),
            active: self.attr_n(&item, "active")?,
            canary,
        }))
    }

    async fn set_alias(&self, alias: &Alias) -> StoreResult<()> {
        let mut item = key(&self.pk_workflow(&alias.workflow_id), "ALIAS");
        item.insert("active".into(), n(alias.active));
        if let Some(c) = alias.canary {
            item.insert("canary_version".into(), n(c.version));
            item.insert("canary_weight".into(), n(c.weight));
        }
        self.put_item(item).await.map(drop)
    }
}
