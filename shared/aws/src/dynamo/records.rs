//! [`RecordStore`] (`<t>#REC#<collection>` / `<key>`) and [`TenantStore`]
//! (`TENANT#<t>` / `TENANT`) on the table.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use eventflow_ports::{RecordStore, StoreError, StoreResult, TenantRecord, TenantStore};
use serde_json::Value;

use super::{DynamoStore, Item, body_item, key, s};

impl DynamoStore {
    fn pk_records(&self, collection: &str) -> String {
        format!("{}#REC#{collection}", self.tenant)
    }

    fn old_body(&self, old: Option<Item>) -> StoreResult<Option<Value>> {
        old.map(|item| self.body(&item)).transpose()
    }
}

#[async_trait]
impl RecordStore for DynamoStore {
    async fn get(&self, collection: &str, key: &str) -> StoreResult<Option<Value>> {
        let item = self.get_item(&self.pk_records(collection), key).await?;
        self.old_body(item)
    }

    /// One PutItem, returning the replaced item (`ReturnValues` `ALL_OLD`).
    async fn put(&self, collection: &str, key: &str, value: &Value) -> StoreResult<Option<Value>> {
        let item = body_item(&self.pk_records(collection), key, value)?;
        let old = self.put_item(item).await?;
        self.old_body(old)
    }

    /// One DeleteItem, returning the removed item (`ReturnValues` `ALL_OLD`).
    async fn delete(&self, collection: &str, key: &str) -> StoreResult<Option<Value>> {
        let old = self.delete_item(&self.pk_records(collection), key).await?;
        self.old_body(old)
    }
}

fn tenant_pk(tenant: &str) -> String {
    format!("TENANT#{tenant}")
}

/// Tenants are not under a tenant's prefix: any store of the table can create and read them
/// (the API's authentication reads them before it knows whose request it is).
#[async_trait]
impl TenantStore for DynamoStore {
    async fn create_tenant(&self, record: &TenantRecord) -> StoreResult<()> {
        let mut item = key(&tenant_pk(&record.tenant), "TENANT");
        item.insert("tenant".into(), s(&record.tenant));
        item.insert("key_hash".into(), s(&record.key_hash));
        item.insert("webhook_secret".into(), s(&record.webhook_secret));
        item.insert(
            "created_at".into(),
            s(record
                .created_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        );
        if self.put_new(item).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "the tenant {} exists",
                record.tenant
            )))
        }
    }

    async fn tenant(&self, tenant: &str) -> StoreResult<Option<TenantRecord>> {
        let Some(item) = self.get_item(&tenant_pk(tenant), "TENANT").await? else {
            return Ok(None);
        };
        let created_at = DateTime::parse_from_rfc3339(self.attr_s(&item, "created_at")?)
            .map_err(|e| self.malformed(&item, format!("`created_at`: {e}")))?
            .with_timezone(&Utc);
        Ok(Some(TenantRecord {
            tenant: tenant.to_owned(),
            key_hash: self.attr_s(&item, "key_hash")?.to_owned(),
            created_at,
            webhook_secret: self.attr_s(&item, "webhook_secret")?.to_owned(),
        }))
    }
}
