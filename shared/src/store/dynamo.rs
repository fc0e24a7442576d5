//! The DynamoDB store: one table, keys prefixed by tenant.
//!
//! | item              | PK                   | SK            |
//! |-------------------|----------------------|---------------|
//! | conversation head | `T#{tenant}#C#{id}`  | `META`        |
//! | message           | `T#{tenant}#C#{id}`  | `M#{seq:012}` |
//! | api key (auth)    | `K#{sha256}`         | `KEY`         |
//! | api key (by id)   | `KEYS`               | `{key_id}`    |
//! | counter           | `R#{key_id}` / `T#{tenant}#B` | window |
//! | usage             | `T#{tenant}#U`       | `{day}#{model}` |
//!
//! `META` sorts after every `M#...`, so one descending Query returns the head
//! first and then the messages newest first: a whole conversation is one read.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
};

use super::{
    ApiKeyRecord, Conversation, ConversationMeta, CounterKey, MAX_ITEM_BYTES, Store, StoreError,
    StoredMessage, TurnWrite, UsageRow, check_turn_size,
};

type Item = HashMap<String, AttributeValue>;

/// The TTL attribute the table declares.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// A DynamoDB-backed store.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn sdk_err<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Backend(DisplayErrorContext(&e).to_string())
}

fn bad(what: &str) -> StoreError {
    StoreError::Backend(format!("malformed item: {what}"))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| bad(name))
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad(name))
}

fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn conv_pk(tenant: &str, id: &str) -> String {
    format!("T#{tenant}#C#{id}")
}

fn msg_sk(seq: u64) -> String {
    format!("M#{seq:012}")
}

fn meta_item(pk: &str, meta: &ConversationMeta) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert("PK".into(), s(pk));
    item.insert("SK".into(), s("META"));
    item.insert("version".into(), n(meta.version));
    item.insert("next_seq".into(), n(meta.next_seq));
    item.insert("turns".into(), n(meta.turns));
    item.insert("tokens".into(), n(meta.tokens));
    item.insert("created".into(), n(meta.created));
    item.insert("updated".into(), n(meta.updated));
    if !meta.system.is_empty() {
        item.insert(
            "system".into(),
            s(serde_json::to_string(&meta.system).map_err(|e| bad(&e.to_string()))?),
        );
    }
    if let Some(e) = meta.expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(e));
    }
    Ok(item)
}

fn parse_meta(item: &Item) -> Result<ConversationMeta, StoreError> {
    Ok(ConversationMeta {
        version: get_n(item, "version")?,
        next_seq: get_n(item, "next_seq")?,
        turns: get_n(item, "turns")?,
        tokens: get_n(item, "tokens")?,
        created: get_n(item, "created")?,
        updated: get_n(item, "updated")?,
        system: match item.get("system").and_then(|v| v.as_s().ok()) {
            Some(json) => serde_json::from_str(json).map_err(|_| bad("system"))?,
            None => Vec::new(),
        },
        expires_at: opt_n(item, TTL_ATTRIBUTE),
    })
}

fn message_item(pk: &str, m: &StoredMessage) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert("PK".into(), s(pk));
    item.insert("SK".into(), s(msg_sk(m.seq)));
    item.insert("seq".into(), n(m.seq));
    item.insert(
        "msg".into(),
        s(serde_json::to_string(&m.message).map_err(|e| bad(&e.to_string()))?),
    );
    item.insert("created".into(), n(m.created));
    if let Some(t) = m.tokens {
        item.insert("tokens".into(), n(t));
    }
    if let Some(model) = &m.model {
        item.insert("model".into(), s(model));
    }
    if let Some(e) = m.expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(e));
    }
    Ok(item)
}

fn parse_message(item: &Item) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        seq: get_n(item, "seq")?,
        message: serde_json::from_str(&get_s(item, "msg")?).map_err(|_| bad("msg"))?,
        tokens: opt_n(item, "tokens"),
        created: get_n(item, "created")?,
        model: item.get("model").and_then(|v| v.as_s().ok()).cloned(),
        expires_at: opt_n(item, TTL_ATTRIBUTE),
    })
}

fn key_item(pk: &str, sk: &str, k: &ApiKeyRecord) -> Item {
    let mut item = Item::new();
    item.insert("PK".into(), s(pk));
    item.insert("SK".into(), s(sk));
    item.insert("key_id".into(), s(&k.key_id));
    item.insert("hash".into(), s(&k.hash));
    item.insert("tenant".into(), s(&k.tenant));
    item.insert("name".into(), s(&k.name));
    item.insert(
        "scopes".into(),
        AttributeValue::L(k.scopes.iter().map(s).collect()),
    );
    item.insert("created".into(), n(k.created));
    item.insert("revoked".into(), AttributeValue::Bool(k.revoked));
    if let Some(v) = k.valid_until {
        item.insert("valid_until".into(), n(v));
    }
    item.insert(
        "models".into(),
        AttributeValue::L(k.models.iter().map(s).collect()),
    );
    if let Some(rpm) = k.rpm {
        item.insert("rpm".into(), n(rpm));
    }
    item
}

fn string_list(item: &Item, name: &str) -> Result<Vec<String>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::L(l)) => Ok(l.iter().filter_map(|v| v.as_s().ok().cloned()).collect()),
        None => Ok(Vec::new()),
        _ => Err(bad(name)),
    }
}

fn parse_key(item: &Item) -> Result<ApiKeyRecord, StoreError> {
    let scopes = string_list(item, "scopes")?;
    Ok(ApiKeyRecord {
        key_id: get_s(item, "key_id")?,
        hash: get_s(item, "hash")?,
        tenant: get_s(item, "tenant")?,
        name: get_s(item, "name")?,
        scopes,
        created: get_n(item, "created")?,
        revoked: item
            .get("revoked")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        valid_until: opt_n(item, "valid_until"),
        models: string_list(item, "models")?,
        rpm: opt_n(item, "rpm"),
    })
}

const USAGE_COUNTERS: [&str; 7] = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_micro_usd",
];

fn usage_values(row: &UsageRow) -> [u64; 7] {
    [
        row.requests,
        row.prompt_tokens,
        row.completion_tokens,
        row.total_tokens,
        row.cached_tokens,
        row.reasoning_tokens,
        row.cost_micro_usd,
    ]
}

fn parse_usage(item: &Item) -> Result<UsageRow, StoreError> {
    let c = |name| opt_n::<u64>(item, name).unwrap_or(0);
    Ok(UsageRow {
        day: get_s(item, "day")?,
        model: get_s(item, "model")?,
        requests: c("requests"),
        prompt_tokens: c("prompt_tokens"),
        completion_tokens: c("completion_tokens"),
        total_tokens: c("total_tokens"),
        cached_tokens: c("cached_tokens"),
        reasoning_tokens: c("reasoning_tokens"),
        cost_micro_usd: c("cost_micro_usd"),
        price_version: get_s(item, "price_version").unwrap_or_default(),
    })
}

/// Whether a failed transaction lost a condition or a race (both mean: re-read).
fn is_conflict(e: &SdkError<TransactWriteItemsError, impl std::fmt::Debug>) -> bool {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
            c.cancellation_reasons().iter().any(|r| {
                matches!(
                    r.code(),
                    Some("ConditionalCheckFailed" | "TransactionConflict")
                )
            })
        }
        _ => false,
    }
}

impl DynamoStore {
    /// A store on `table` through `client` (built once per cold start).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table with the schema the SAM template declares (emulators, first setup).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("PK")?)
            .attribute_definitions(attr("SK")?)
            .key_schema(key("PK", KeyType::Hash)?)
            .key_schema(key("SK", KeyType::Range)?)
            .send()
            .await
            .map_err(sdk_err)?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
            )
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// Consistent single-item read.
    async fn get(
        &self,
        pk: impl Into<String>,
        sk: impl Into<String>,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.item)
    }

    fn put(
        &self,
        item: Item,
        condition: &str,
        values: Option<Item>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn set_revoked(&self, pk: &str, sk: &str) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(sk))
            .update_expression("SET revoked = :t")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn load_conversation(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Conversation, StoreError> {
        let pk = conv_pk(tenant, id);
        let mut meta = None;
        let mut newest_first = Vec::new();
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(&pk))
            .scan_index_forward(false)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            let item = item.map_err(sdk_err)?;
            if get_s(&item, "SK")? == "META" {
                let m = parse_meta(&item)?;
                if !m.is_live(now) {
                    return Ok(Conversation {
                        meta: m,
                        messages: Vec::new(),
                    });
                }
                meta = Some(m);
            } else {
                let m = parse_message(&item)?;
                if m.expires_at.is_none_or(|e| e > now) {
                    newest_first.push(m);
                }
            }
        }
        let Some(meta) = meta else {
            return Ok(Conversation::default());
        };
        // Messages above next_seq would be debris of a failed write; never show them.
        newest_first.retain(|m| m.seq < meta.next_seq);
        newest_first.reverse();
        Ok(Conversation {
            meta,
            messages: newest_first,
        })
    }

    async fn conversation_meta(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<ConversationMeta>, StoreError> {
        let item = self.get(conv_pk(tenant, id), "META").await?;
        item.as_ref().map(parse_meta).transpose()
    }

    async fn append_turn(
        &self,
        tenant: &str,
        id: &str,
        turn: &TurnWrite,
    ) -> Result<(), StoreError> {
        check_turn_size(tenant, id, turn)?;
        let pk = conv_pk(tenant, id);
        let head = if turn.expected_version == 0 {
            self.put(
                meta_item(&pk, &turn.meta)?,
                "attribute_not_exists(PK)",
                None,
            )?
        } else {
            let values = HashMap::from([(":v".to_string(), n(turn.expected_version))]);
            self.put(meta_item(&pk, &turn.meta)?, "version = :v", Some(values))?
        };
        let mut items = vec![head];
        for m in &turn.messages {
            // A message slot is written once; an existing one means a lost race.
            items.push(self.put(message_item(&pk, m)?, "attribute_not_exists(PK)", None)?);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Err(StoreError::Conflict),
            // Our estimate is conservative, but DynamoDB has the last word.
            Err(e)
                if e.as_service_error()
                    .and_then(|s| s.meta().message())
                    .is_some_and(|m| m.contains("Item size")) =>
            {
                Err(StoreError::TooLarge {
                    what: "a message",
                    bytes: MAX_ITEM_BYTES + 1,
                    limit: MAX_ITEM_BYTES,
                })
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    async fn put_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let items = vec![
            self.put(
                key_item(&format!("K#{}", key.hash), "KEY", key),
                "attribute_not_exists(PK)",
                None,
            )?,
            self.put(
                key_item("KEYS", &key.key_id, key),
                "attribute_not_exists(PK)",
                None,
            )?,
        ];
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let item = self.get(format!("K#{hash}"), "KEY").await?;
        item.as_ref().map(parse_key).transpose()
    }

    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut out = Vec::new();
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s("KEYS"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            let rec = parse_key(&item.map_err(sdk_err)?)?;
            if tenant.is_none_or(|t| t == rec.tenant) {
                out.push(rec);
            }
        }
        out.sort_by(|a, b| (a.created, &a.key_id).cmp(&(b.created, &b.key_id)));
        Ok(out)
    }

    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let item = self.get("KEYS", key_id).await?;
        let Some(item) = item.as_ref() else {
            return Ok(false);
        };
        let hash = get_s(item, "hash")?;
        let items = vec![
            self.set_revoked(&format!("K#{hash}"), "KEY")?,
            self.set_revoked("KEYS", key_id)?,
        ];
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(true)
    }

    async fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let item = self.get("KEYS", key_id).await?;
        item.as_ref().map(parse_key).transpose()
    }

    async fn counter_add(
        &self,
        key: &CounterKey,
        delta: i64,
        limit: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(&key.pk))
            .key("SK", s(&key.sk))
            .expression_attribute_values(":d", n(delta));
        let mut update = "ADD n :d".to_string();
        if let Some(e) = expires_at {
            update.push_str(" SET #ttl = :e");
            req = req
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":e", n(e));
        }
        if let (Some(limit), true) = (limit, delta > 0) {
            // Conditions cannot add, so compare with limit - delta.
            let max = limit - delta;
            if max < 0 {
                return Ok(false);
            }
            req = req
                .condition_expression("attribute_not_exists(n) OR n <= :max")
                .expression_attribute_values(":max", n(max));
        }
        match req.update_expression(update).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    async fn counter_get(&self, key: &CounterKey) -> Result<i64, StoreError> {
        let item = self.get(&key.pk, &key.sk).await?;
        Ok(item.as_ref().and_then(|i| opt_n(i, "n")).unwrap_or(0))
    }

    async fn add_usage(&self, tenant: &str, row: &UsageRow) -> Result<(), StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(format!("T#{tenant}#U")))
            .key("SK", s(format!("{}#{}", row.day, row.model)))
            .expression_attribute_values(":day", s(&row.day))
            .expression_attribute_values(":model", s(&row.model))
            .expression_attribute_values(":pv", s(&row.price_version));
        let mut adds = Vec::new();
        for (i, (name, value)) in USAGE_COUNTERS.iter().zip(usage_values(row)).enumerate() {
            adds.push(format!("{name} :c{i}"));
            req = req.expression_attribute_values(format!(":c{i}"), n(value));
        }
        let update = format!(
            "ADD {} SET #day = :day, #model = :model, price_version = :pv",
            adds.join(", ")
        );
        req.update_expression(update)
            .expression_attribute_names("#day", "day")
            .expression_attribute_names("#model", "model")
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn usage(&self, tenant: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, StoreError> {
        let mut out = Vec::new();
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(format!("T#{tenant}#U")))
            .expression_attribute_values(":lo", s(format!("{from}#")))
            .expression_attribute_values(":hi", s(format!("{to}$")))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            out.push(parse_usage(&item.map_err(sdk_err)?)?);
        }
        Ok(out)
    }
}
