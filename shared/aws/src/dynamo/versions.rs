//! [`VersionStore`] on the table: `V#<n>` items (never overwritten), `HASH#<sha256>` items
//! finding a version by its content, the `ALIAS` item and the `<t>#WORKFLOWS` list.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use eventflow_engine::{Definition, Timestamp};
use eventflow_ports::{
    Alias, Canary, StoreError, StoreResult, VersionRecord, VersionState, VersionStore,
};

use super::{DynamoStore, Item, check_size, is_conditional, key, n, s};

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

    /// Moves the claim of a content from `from` (taken by another content) to the next free
    /// number; a claim already moved by another publisher is left as it is.
    async fn move_claim(&self, pk: &str, hash_sk: &str, from: u32, to: u32) -> StoreResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key("pk", s(pk))
            .key("sk", s(hash_sk))
            .update_expression("SET #number = :to")
            .condition_expression("#number = :from")
            .expression_attribute_names("#number", "number")
            .expression_attribute_values(":from", n(from))
            .expression_attribute_values(":to", n(to))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Ok(()),
            Err(e) => Err(self.call_error("UpdateItem", e)),
        }
    }

    /// The `<t>#WORKFLOWS` item of a workflow (idempotent).
    async fn list_workflow(&self, workflow_id: &str) -> StoreResult<()> {
        let mut listed = key(&self.workflows_pk(), workflow_id);
        listed.insert("workflow".into(), s(workflow_id));
        self.put_item(listed).await.map(drop)
    }
}

#[async_trait]
impl VersionStore for DynamoStore {
    /// The `HASH#<hash>` item is the claim of a content to a number: it is put first (with
    /// `attribute_not_exists(pk)`), so of two publishers of the same content one claims and
    /// both return the same version. Then `V#<n>` is put with `attribute_not_exists(pk)`
    /// (never overwritten): if another content took `n` first, the claim moves to the next
    /// number. A publisher that crashed after claiming leaves a claim without its version,
    /// which the next publisher of that content completes.
    async fn publish(
        &self,
        definition: &Definition,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<VersionRecord> {
        let wf = definition.id.as_str();
        let pk = self.pk_workflow(wf);
        let hash_sk = format!("HASH#{hash}");
        let mut record = VersionRecord {
            workflow_id: wf.to_owned(),
            number: 0,
            hash: hash.to_owned(),
            definition: definition.clone(),
            published_at: now,
        };
        for _ in 0..PUBLISH_ATTEMPTS {
            let (number, fresh) = match self.get_item(&pk, &hash_sk).await? {
                Some(claim) => (self.attr_n::<u32>(&claim, "number")?, false),
                None => {
                    let number = self.latest(wf).await?.map_or(0, |v| v.number) + 1;
                    let mut claim = key(&pk, &hash_sk);
                    claim.insert("number".into(), n(number));
                    if !self.put_new(claim).await? {
                        continue; // another publisher of this content claimed first
                    }
                    (number, true)
                }
            };
            if !fresh && let Some(existing) = self.version(wf, number).await? {
                if existing.hash == hash {
                    self.list_workflow(wf).await?;
                    return Ok(existing);
                }
                let next = self.latest(wf).await?.map_or(0, |v| v.number) + 1;
                self.move_claim(&pk, &hash_sk, number, next).await?;
                continue;
            }
            record.number = number;
            if self.put_new(self.version_item(&record)?).await? {
                self.list_workflow(wf).await?;
                return Ok(record);
            }
            // Taken meanwhile: the next round reads who took it.
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
                Some(("V#", "V#\u{10FFFF}")),
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
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
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
