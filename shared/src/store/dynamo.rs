//! The DynamoDB store: one table, keys prefixed by tenant.
//!
//! | item              | PK                   | SK            |
//! |-------------------|----------------------|---------------|
//! | conversation head | `T#{tenant}#C#{id}`  | `META`        |
//! | message           | `T#{tenant}#C#{id}`  | `M#{seq:012}` |
//! | message, part n>0 | `T#{tenant}#C#{id}`  | `M#{seq:012}#p{n:03}` |
//! | conversation count | `T#{tenant}#N`      | `CONVERSATIONS` |
//! | idempotency       | `T#{tenant}#I#{key}` | `IDEM`        |
//! | api key (auth)    | `K#{sha256}`         | `KEY`         |
//! | api key (by id)   | `KEYS`               | `{key_id}`    |
//! | counter           | `R#{tenant}#{key_id}` / `T#{tenant}#B` | window |
//! | usage             | `T#{tenant}#U`       | `{day}#{model}` |
//! | MCP server        | `T#{tenant}#MCP`     | `{name}`      |
//!
//! `META` sorts after every `M#...`, so one descending Query returns the head
//! first and then the messages newest first: a context window is one read.
//! A message's parts sort together, right after its first item.
//!
//! A deleted conversation's head stays as a tombstone (no listing keys) that
//! keeps the version, so a turn that read the deleted life fails its
//! condition; TTL removes heads and tombstones `TOMBSTONE_KEEP_SECS` after
//! they stopped being live.
//!
//! Live conversation heads also carry `GSI1PK = T#{tenant}#CONVS` and
//! `GSI1SK = {updated:012}#{id}`: the `by_updated` index lists a tenant's
//! conversations newest-updated first without touching their messages.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, Update, WriteRequest,
};
use tracing::Instrument;

use super::window::NewestFirst;
use super::{
    ApiKeyRecord, AuditPage, AuditRecord, AuditStore, ConversationMeta, ConversationPage,
    ConversationStore, CounterAdd, CounterKey, CounterStore, IdempotencyClaim, IdempotencyDone,
    IdempotencyRecord, IdempotencyRequest, IdempotencyStore, KeyStore, ListPosition,
    MAX_ITEM_BYTES, MAX_WRITE_ATTEMPTS, McpServerRecord, McpServerStore, MessageEdit, MessagePage,
    Order, ResponseRecord, ResponseStore, StoreError, StoredMessage, TurnWrite, UsageBatch,
    UsageRow, check_turn_size, conversation_count_key, listing_key,
};

type Item = HashMap<String, AttributeValue>;

/// The TTL attribute the table declares.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The index listing a tenant's conversations by last update.
pub const LISTING_INDEX: &str = "by_updated";
/// Attributes the listing index carries besides its keys.
pub const LISTING_ATTRIBUTES: [&str; 3] = ["doc", "version", TTL_ATTRIBUTE];
/// Items a windowed read asks for per page.
const WINDOW_PAGE: i32 = 100;
/// Attempts at a batch of deletes before giving up on unprocessed items.
const BATCH_ATTEMPTS: u32 = 8;

/// A DynamoDB-backed store.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// Error codes that mean "try again later": throttling and DynamoDB's own
/// transient failures (the SDK has already retried them).
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
];

fn sdk_err<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(&e).to_string();
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => {
            s.err().code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
                // A transaction cancelled because one of its items was throttled.
                || s.err().message().is_some_and(|m| m.contains("ThrottlingError"))
        }
        _ => false,
    };
    if transient {
        StoreError::Unavailable(detail)
    } else {
        StoreError::Backend(detail)
    }
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

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| bad(&e.to_string()))
}

fn conv_id_from_pk<'a>(pk: &'a str, tenant: &str) -> Option<&'a str> {
    pk.strip_prefix("T#")?
        .strip_prefix(tenant)?
        .strip_prefix("#C#")
}

/// The head item: counters, title and metadata in `doc`; the system prompt
/// and summary in their own attributes so the listing index leaves them out.
fn meta_item(tenant: &str, id: &str, meta: &ConversationMeta) -> Result<Item, StoreError> {
    let mut doc = meta.clone();
    let system = std::mem::take(&mut doc.system);
    let summary = doc.summary.take();
    let mut item = Item::new();
    item.insert("PK".into(), s(conv_pk(tenant, id)));
    item.insert("SK".into(), s("META"));
    item.insert("version".into(), n(meta.version));
    item.insert("doc".into(), s(json(&doc)?));
    if !system.is_empty() {
        item.insert(
            "system".into(),
            s(json(&super::format::SystemPrompt(&system))?),
        );
    }
    if let Some(summary) = summary {
        item.insert("summary".into(), s(json(&summary)?));
    }
    // TTL removes the header only a while after it stopped being live: until
    // then its version fences off turns that read an earlier life.
    if let Some(e) = meta.forget_at() {
        item.insert(TTL_ATTRIBUTE.into(), n(e));
    }
    if !meta.is_tombstone() {
        item.insert("GSI1PK".into(), s(format!("T#{tenant}#CONVS")));
        item.insert("GSI1SK".into(), s(listing_key(meta.updated, id)));
    }
    Ok(item)
}

fn parse_meta(item: &Item) -> Result<ConversationMeta, StoreError> {
    let mut meta: ConversationMeta =
        serde_json::from_str(&get_s(item, "doc")?).map_err(|_| bad("doc"))?;
    // `expires_at` comes from `doc`: the TTL attribute is later (see `meta_item`).
    meta.version = get_n(item, "version")?;
    if let Some(system) = item.get("system").and_then(|v| v.as_s().ok()) {
        // Either format: model messages, or OpenAI ones written before it.
        let mut de = serde_json::Deserializer::from_str(system);
        meta.system = super::format::system(&mut de).map_err(|_| bad("system"))?;
    }
    if let Some(summary) = item.get("summary").and_then(|v| v.as_s().ok()) {
        meta.summary = Some(serde_json::from_str(summary).map_err(|_| bad("summary"))?);
    }
    Ok(meta)
}

/// Sort key of every item of slots up to `seq` (its continuation parts included).
fn msg_sk_end(seq: u64) -> String {
    format!("{}#~", msg_sk(seq))
}

/// A message's items: the document split into parts that each fit an item.
/// The first (`M#{seq}`) says how many parts there are; the others
/// (`M#{seq}#p{n}`) sort right after it. A message that fits one item is
/// stored as before, so items of either shape read the same.
fn message_items(pk: &str, m: &StoredMessage) -> Result<Vec<Item>, StoreError> {
    let doc = json(m)?;
    let parts = super::split_parts(&doc, super::PART_BYTES);
    let count = parts.len();
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let mut item = Item::new();
            item.insert("PK".into(), s(pk));
            item.insert("seq".into(), n(m.seq));
            item.insert("doc".into(), s(part));
            if i == 0 {
                item.insert("SK".into(), s(msg_sk(m.seq)));
                if count > 1 {
                    item.insert("parts".into(), n(count));
                }
            } else {
                item.insert("SK".into(), s(format!("{}#p{i:03}", msg_sk(m.seq))));
                item.insert("part".into(), n(i));
            }
            item
        })
        .collect())
}

/// Reassembles messages from their items, read in either order; parts of an
/// unfinished message (debris of a lost write) are dropped.
#[derive(Default)]
struct Assembler {
    seq: Option<u64>,
    parts: std::collections::BTreeMap<usize, String>,
    count: Option<usize>,
}

impl Assembler {
    /// Takes the next item; returns a message once all its parts are in.
    fn push(&mut self, item: &Item) -> Result<Option<StoredMessage>, StoreError> {
        let seq: u64 = get_n(item, "seq")?;
        if self.seq != Some(seq) {
            *self = Assembler {
                seq: Some(seq),
                ..Assembler::default()
            };
        }
        let index = opt_n::<usize>(item, "part").unwrap_or(0);
        if index == 0 {
            self.count = Some(opt_n::<usize>(item, "parts").unwrap_or(1));
        }
        self.parts.insert(index, get_s(item, "doc")?);
        match self.count {
            Some(count) if self.parts.len() >= count => {
                let doc: String = std::mem::take(&mut self.parts).into_values().collect();
                self.seq = None;
                serde_json::from_str(&doc)
                    .map(Some)
                    .map_err(|_| bad("message doc"))
            }
            _ => Ok(None),
        }
    }
}

fn idem_pk(tenant: &str, key: &str) -> String {
    format!("T#{tenant}#I#{key}")
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
    if !k.mcp_servers.is_empty() {
        item.insert(
            "mcp_servers".into(),
            AttributeValue::L(k.mcp_servers.iter().map(s).collect()),
        );
    }
    if !k.mcp_tools.is_empty() {
        item.insert(
            "mcp_tools".into(),
            AttributeValue::L(k.mcp_tools.iter().map(s).collect()),
        );
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
        mcp_servers: if item.contains_key("mcp_servers") {
            string_list(item, "mcp_servers")?
        } else {
            Vec::new()
        },
        mcp_tools: string_list(item, "mcp_tools")?,
    })
}

const USAGE_COUNTERS: [&str; 10] = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micro_usd",
    "estimated_requests",
    "tool_errors",
];

fn usage_values(row: &UsageRow) -> [u64; 10] {
    [
        row.requests,
        row.prompt_tokens,
        row.completion_tokens,
        row.total_tokens,
        row.cached_tokens,
        row.cache_write_tokens,
        row.reasoning_tokens,
        row.cost_micro_usd,
        row.estimated_requests,
        row.tool_errors,
    ]
}

/// The ADD/SET update of a usage row: expression, names, values.
fn usage_update(row: &UsageRow) -> (String, HashMap<String, String>, Item) {
    let mut values = Item::from([
        (":day".to_string(), s(&row.day)),
        (":model".to_string(), s(&row.model)),
        (":pv".to_string(), s(&row.price_version)),
    ]);
    let mut adds = Vec::new();
    for (i, (name, value)) in USAGE_COUNTERS.iter().zip(usage_values(row)).enumerate() {
        adds.push(format!("{name} :c{i}"));
        values.insert(format!(":c{i}"), n(value));
    }
    let names = HashMap::from([
        ("#day".to_string(), "day".to_string()),
        ("#model".to_string(), "model".to_string()),
    ]);
    let expr = format!(
        "ADD {} SET #day = :day, #model = :model, price_version = :pv",
        adds.join(", ")
    );
    (expr, names, values)
}

fn usage_key(tenant: &str, row: &UsageRow) -> (AttributeValue, AttributeValue) {
    (
        s(format!("T#{tenant}#U")),
        s(format!("{}#{}", row.day, row.model)),
    )
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
        cache_write_tokens: c("cache_write_tokens"),
        reasoning_tokens: c("reasoning_tokens"),
        cost_micro_usd: c("cost_micro_usd"),
        price_version: get_s(item, "price_version").unwrap_or_default(),
        estimated_requests: c("estimated_requests"),
        tool_errors: c("tool_errors"),
    })
}

/// How long a usage batch's marker is kept: far longer than any flush is
/// retried (a process retries until it exits; Lambda's lasts hours).
const FLUSH_MARKER_SECS: i64 = 7 * 86_400;

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

/// Whether a failed transaction's item `index` failed its condition.
fn failed_condition(
    e: &SdkError<TransactWriteItemsError, impl std::fmt::Debug>,
    index: usize,
) -> bool {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .get(index)
            .is_some_and(|r| r.code() == Some("ConditionalCheckFailed")),
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
            .attribute_definitions(attr("GSI1PK")?)
            .attribute_definitions(attr("GSI1SK")?)
            .key_schema(key("PK", KeyType::Hash)?)
            .key_schema(key("SK", KeyType::Range)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(LISTING_INDEX)
                    .key_schema(key("GSI1PK", KeyType::Hash)?)
                    .key_schema(key("GSI1SK", KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::Include)
                            .set_non_key_attributes(Some(
                                LISTING_ATTRIBUTES.iter().map(|a| a.to_string()).collect(),
                            ))
                            .build(),
                    )
                    .build()
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
            )
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

    fn usage_item(&self, tenant: &str, row: &UsageRow) -> Result<TransactWriteItem, StoreError> {
        let (expr, names, values) = usage_update(row);
        let (pk, sk) = usage_key(tenant, row);
        let update = Update::builder()
            .table_name(&self.table)
            .key("PK", pk)
            .key("SK", sk)
            .update_expression(expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The update that stores an idempotent response, only while `token` holds the claim.
    fn idempotency_item(
        &self,
        tenant: &str,
        done: &IdempotencyDone,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("PK", s(idem_pk(tenant, &done.key)))
            .key("SK", s("IDEM"))
            .update_expression("SET #resp = :r, #ttl = :e")
            .condition_expression("#token = :t")
            .expression_attribute_names("#resp", "response")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":r", s(json(&super::unreplayable(&done.response))?))
            .expression_attribute_values(":e", n(done.expires_at))
            .expression_attribute_values(":t", s(&done.token))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The change of a tenant's conversation count by `delta`, refused when
    /// growth would pass `cap`.
    fn count_item(
        &self,
        tenant: &str,
        delta: i64,
        cap: Option<u64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let key = conversation_count_key(tenant);
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("PK", s(&key.pk))
            .key("SK", s(&key.sk))
            .update_expression("ADD n :d")
            .expression_attribute_values(":d", n(delta));
        if let (Some(cap), true) = (cap, delta > 0) {
            update = update
                .condition_expression("attribute_not_exists(n) OR n < :cap")
                .expression_attribute_values(":cap", n(cap));
        }
        let update = update
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Deletes items by key, 25 a batch, retrying what DynamoDB leaves unprocessed.
    async fn delete_keys(&self, keys: Vec<(String, String)>) -> Result<(), StoreError> {
        for chunk in keys.chunks(25) {
            let mut pending = chunk
                .iter()
                .map(|(pk, sk)| {
                    DeleteRequest::builder()
                        .key("PK", s(pk))
                        .key("SK", s(sk))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| StoreError::Backend(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt == BATCH_ATTEMPTS {
                    return Err(StoreError::Backend(format!(
                        "{} deletes stayed unprocessed",
                        pending.len()
                    )));
                }
                if attempt > 0 {
                    tokio::time::sleep(crate::retry::backoff(attempt - 1, 20)).await;
                }
                attempt += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(sdk_err)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }

    /// Keys of a conversation's message slots `from..to`.
    async fn message_keys(
        &self,
        pk: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut keys = Vec::new();
        if from >= to {
            return Ok(keys);
        }
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":lo", s(msg_sk(from)))
            .expression_attribute_values(":hi", s(msg_sk_end(to - 1)))
            .projection_expression("PK, SK")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            let item = item.map_err(sdk_err)?;
            keys.push((get_s(&item, "PK")?, get_s(&item, "SK")?));
        }
        Ok(keys)
    }

    async fn idempotency_record(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(item) = self.get(idem_pk(tenant, key), "IDEM").await? else {
            return Ok(None);
        };
        Ok(Some(IdempotencyRecord {
            fingerprint: get_s(&item, "fingerprint")?,
            token: get_s(&item, "token")?,
            lease_until: get_n(&item, "lease_until")?,
            expires_at: get_n(&item, TTL_ATTRIBUTE)?,
            response: match item.get("response").and_then(|v| v.as_s().ok()) {
                Some(r) => Some(serde_json::from_str(r).map_err(|_| bad("response"))?),
                None => None,
            },
        }))
    }
}

/// The descending read of one conversation: one Query over `META` then
/// `M#...`, [`WINDOW_PAGE`] items a page, the next page fetched only when
/// the walk asks past the last one.
struct Descending<'a> {
    store: &'a DynamoStore,
    pk: String,
    /// Items of the current page not handed out yet.
    items: VecDeque<Item>,
    /// Where the next page starts (the last page's `LastEvaluatedKey`).
    start: Option<Item>,
    /// Whether no page follows.
    done: bool,
    parts: Assembler,
}

impl Descending<'_> {
    /// The next item, reading the next page when this one is used up.
    async fn next_item(&mut self) -> Result<Option<Item>, StoreError> {
        while self.items.is_empty() {
            if self.done {
                return Ok(None);
            }
            let page = self
                .store
                .client
                .query()
                .table_name(&self.store.table)
                .key_condition_expression("PK = :pk")
                .expression_attribute_values(":pk", s(&self.pk))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(WINDOW_PAGE)
                .set_exclusive_start_key(self.start.take())
                .send()
                .instrument(crate::trace::store_span("aws.dynamodb", "Query", "window"))
                .await
                .map_err(sdk_err)?;
            self.start = page.last_evaluated_key;
            self.done = self.start.is_none();
            self.items = page.items.unwrap_or_default().into();
        }
        Ok(self.items.pop_front())
    }
}

#[async_trait]
impl NewestFirst for Descending<'_> {
    async fn header(&mut self) -> Result<Option<ConversationMeta>, StoreError> {
        // The head sorts last, so it comes first. No head but messages: TTL
        // removed the head and the sweeper has not purged its messages yet;
        // a new life starts above them so that nothing of the old one shows.
        let Some(item) = self.next_item().await? else {
            return Ok(None);
        };
        if get_s(&item, "SK")? != "META" {
            let above: u64 = get_n::<u64>(&item, "seq")? + 1;
            return Ok(Some(ConversationMeta {
                first_seq: above,
                next_seq: above,
                ..ConversationMeta::default()
            }));
        }
        parse_meta(&item).map(Some)
    }

    async fn next_message(
        &mut self,
        slots: Range<u64>,
    ) -> Result<Option<StoredMessage>, StoreError> {
        while let Some(item) = self.next_item().await? {
            let seq: u64 = get_n(&item, "seq")?;
            if seq >= slots.end {
                continue;
            }
            if seq < slots.start {
                // Older slots only from here on: read no further.
                self.items.clear();
                self.done = true;
                return Ok(None);
            }
            if let Some(m) = self.parts.push(&item)? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    fn newest_first<'a>(&'a self, tenant: &'a str, id: &'a str) -> Box<dyn NewestFirst + 'a> {
        Box::new(Descending {
            store: self,
            pk: conv_pk(tenant, id),
            items: VecDeque::new(),
            start: None,
            done: false,
            parts: Assembler::default(),
        })
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "Query", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "Query", ctxgate.store.call = "message_page"))]
    async fn message_page(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
        order: Order,
        after: Option<u64>,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let Some(meta) = self
            .conversation_meta(tenant, id)
            .await?
            .filter(|m| m.is_live(now))
        else {
            return Ok(MessagePage::default());
        };
        let (lo, hi) = order.slots(&meta, after);
        let mut messages = Vec::new();
        let mut has_more = false;
        if lo < hi {
            let mut items = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(conv_pk(tenant, id)))
                .expression_attribute_values(":lo", s(msg_sk(lo)))
                .expression_attribute_values(":hi", s(msg_sk_end(hi - 1)))
                .scan_index_forward(order == Order::Asc)
                .consistent_read(true)
                .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
                .into_paginator()
                .items()
                .send();
            let mut parts = Assembler::default();
            while let Some(item) = items.next().await {
                let item = item.map_err(sdk_err)?;
                if messages.len() == limit {
                    has_more = true;
                    break;
                }
                messages.extend(parts.push(&item)?);
            }
        }
        Ok(MessagePage {
            meta: Some(meta),
            messages,
            has_more,
        })
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "Query", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "Query", ctxgate.store.call = "list_conversations"))]
    async fn list_conversations(
        &self,
        tenant: &str,
        now: i64,
        after: Option<&ListPosition>,
        limit: usize,
    ) -> Result<ConversationPage, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(LISTING_INDEX)
            .expression_attribute_values(":pk", s(format!("T#{tenant}#CONVS")))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        query = match after {
            Some(p) => query
                .key_condition_expression("GSI1PK = :pk AND GSI1SK < :after")
                .expression_attribute_values(":after", s(listing_key(p.updated, &p.id))),
            None => query.key_condition_expression("GSI1PK = :pk"),
        };
        let mut items = query.into_paginator().items().send();
        let mut page = ConversationPage::default();
        while let Some(item) = items.next().await {
            let item = item.map_err(sdk_err)?;
            let meta = parse_meta(&item)?;
            // Expired heads stay indexed until the TTL sweep; they are gone already.
            if !meta.is_live(now) {
                continue;
            }
            let pk = get_s(&item, "PK")?;
            let id = conv_id_from_pk(&pk, tenant).ok_or_else(|| bad("PK"))?;
            if page.conversations.len() == limit {
                let (id, m) = &page.conversations[limit - 1];
                page.next = Some(ListPosition {
                    updated: m.updated,
                    id: id.clone(),
                });
                break;
            }
            page.conversations.push((id.to_owned(), meta));
        }
        Ok(page)
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "GetItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "GetItem", ctxgate.store.call = "conversation_meta"))]
    async fn conversation_meta(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<ConversationMeta>, StoreError> {
        let pk = conv_pk(tenant, id);
        if let Some(item) = self.get(&pk, "META").await? {
            return parse_meta(&item).map(Some);
        }
        // No head: messages left by a life whose head TTL removed must not be
        // collided with (or shown); a new life starts above the newest one.
        let newest = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(&pk))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(1)
            .projection_expression("seq")
            .send()
            .await
            .map_err(sdk_err)?;
        match newest.items().first() {
            Some(item) => {
                let above = get_n::<u64>(item, "seq")? + 1;
                Ok(Some(ConversationMeta {
                    first_seq: above,
                    next_seq: above,
                    ..ConversationMeta::default()
                }))
            }
            None => Ok(None),
        }
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "TransactWriteItems", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "TransactWriteItems", ctxgate.store.call = "append_turn"))]
    async fn append_turn(
        &self,
        tenant: &str,
        id: &str,
        turn: &TurnWrite,
    ) -> Result<(), StoreError> {
        check_turn_size(tenant, id, turn)?;
        let pk = conv_pk(tenant, id);
        let head_item = meta_item(tenant, id, &turn.meta)?;
        let head = if turn.expected_version == 0 {
            self.put(head_item, "attribute_not_exists(PK)", None)?
        } else {
            let values = HashMap::from([(":v".to_string(), n(turn.expected_version))]);
            self.put(head_item, "version = :v", Some(values))?
        };
        let mut items = vec![head];
        for m in &turn.messages {
            // A message slot is written once; an existing one means a lost race.
            for item in message_items(&pk, m)? {
                items.push(self.put(item, "attribute_not_exists(PK)", None)?);
            }
        }
        for row in &turn.usage {
            items.push(self.usage_item(tenant, row)?);
        }
        if let Some(done) = &turn.idempotency {
            items.push(self.idempotency_item(tenant, done)?);
        }
        if let Some(r) = &turn.response {
            items.push(self.put(response_item(tenant, r)?, "attribute_not_exists(PK)", None)?);
        }
        // The count of stored conversations rides last, so its cancellation
        // reason can be told from the others.
        let counted = turn.creates.then_some(items.len());
        if turn.creates {
            items.push(self.count_item(tenant, 1, turn.conversation_cap)?);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if counted.is_some_and(|i| failed_condition(&e, i))
                    && !(0..counted.unwrap_or(0)).any(|i| failed_condition(&e, i)) =>
            {
                Err(StoreError::TooManyConversations {
                    limit: turn.conversation_cap.unwrap_or_default(),
                })
            }
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

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "TransactWriteItems", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "TransactWriteItems", ctxgate.store.call = "edit_message"))]
    async fn edit_message(
        &self,
        tenant: &str,
        id: &str,
        edit: &MessageEdit,
    ) -> Result<(), StoreError> {
        let pk = conv_pk(tenant, id);
        // The slot's items as stored now: its parts change only with the
        // header's version, which the transaction checks, so this read
        // cannot go stale unnoticed.
        let old = self.message_keys(&pk, edit.seq, edit.seq + 1).await?;
        let values = HashMap::from([(":v".to_string(), n(edit.expected_version))]);
        let mut items = vec![self.put(
            meta_item(tenant, id, &edit.meta)?,
            "version = :v",
            Some(values),
        )?];
        let new = match &edit.message {
            Some(m) => message_items(&pk, m)?,
            None => Vec::new(),
        };
        let new_keys: Vec<String> = new
            .iter()
            .map(|i| get_s(i, "SK"))
            .collect::<Result<_, _>>()?;
        for item in new {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        // Parts the shorter message no longer has go in the same transaction.
        for (_, sk) in old.iter().filter(|(_, sk)| !new_keys.contains(sk)) {
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("PK", s(&pk))
                .key("SK", s(sk))
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        if items.len() > super::MAX_TRANSACTION_ITEMS {
            return Err(StoreError::TooLarge {
                what: "the edit (items of one transaction)",
                bytes: items.len(),
                limit: super::MAX_TRANSACTION_ITEMS,
            });
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
            Err(e) => Err(sdk_err(e)),
        }
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "TransactWriteItems", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "TransactWriteItems", ctxgate.store.call = "delete_conversation"))]
    async fn delete_conversation(&self, tenant: &str, id: &str) -> Result<(), StoreError> {
        let pk = conv_pk(tenant, id);
        let now = crate::now_secs();
        // 1. A tombstone hides the conversation at once, keeps its version
        //    (so a turn that read it fails its version check) and moves
        //    `first_seq` past every slot, so a turn racing the delete starts
        //    a new life above the slots being removed. It stays until TTL
        //    removes it, well after any turn that could have read the old life.
        let mut to = None;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let current = self.conversation_meta(tenant, id).await?;
            let Some(old) = current
                .clone()
                .filter(|m| m.version > 0 && !m.is_tombstone())
            else {
                // Nothing live: only debris below the current numbering
                // (a life that starts meanwhile writes above it).
                to = Some(current.map_or(0, |m| m.first_seq));
                break;
            };
            let dead = old.tombstone(now);
            let values = HashMap::from([(":v".to_string(), n(old.version))]);
            let items = vec![
                self.put(meta_item(tenant, id, &dead)?, "version = :v", Some(values))?,
                self.count_item(tenant, -1, None)?,
            ];
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => {
                    to = Some(dead.next_seq);
                    break;
                }
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(sdk_err(e)),
            }
        }
        // 2. Every slot below the tombstone's numbering (debris included).
        let to = to.ok_or(StoreError::Conflict)?;
        let keys = self.message_keys(&pk, 0, to).await?;
        self.delete_keys(keys).await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "BatchWriteItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "BatchWriteItem", ctxgate.store.call = "purge_messages"))]
    async fn purge_messages(
        &self,
        tenant: &str,
        id: &str,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        let keys = self.message_keys(&conv_pk(tenant, id), from, to).await?;
        self.delete_keys(keys).await
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "PutItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "PutItem", ctxgate.store.call = "idempotency_claim"))]
    async fn idempotency_claim(
        &self,
        tenant: &str,
        req: &IdempotencyRequest<'_>,
    ) -> Result<IdempotencyClaim, StoreError> {
        for _ in 0..3 {
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("PK", s(idem_pk(tenant, req.key)))
                .item("SK", s("IDEM"))
                .item("fingerprint", s(req.fingerprint))
                .item("token", s(req.token))
                .item("lease_until", n(req.lease_until))
                .item(TTL_ATTRIBUTE, n(req.expires_at))
                // Free, expired, or a dead attempt's claim on the same request.
                .condition_expression(
                    "attribute_not_exists(PK) OR #ttl <= :now \
                     OR (attribute_not_exists(#resp) AND lease_until <= :now AND fingerprint = :fp)",
                )
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_names("#resp", "response")
                .expression_attribute_values(":now", n(req.now))
                .expression_attribute_values(":fp", s(req.fingerprint))
                .send()
                .await;
            match put {
                Ok(_) => return Ok(IdempotencyClaim::Acquired),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    if let Some(outcome) = self
                        .idempotency_record(tenant, req.key)
                        .await?
                        .and_then(|r| r.claim_outcome(req))
                    {
                        return Ok(outcome);
                    }
                    // It changed between the write and the read: try again.
                }
                Err(e) => return Err(sdk_err(e)),
            }
        }
        Ok(IdempotencyClaim::InProgress)
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "TransactWriteItems", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "TransactWriteItems", ctxgate.store.call = "idempotency_complete"))]
    async fn idempotency_complete(
        &self,
        tenant: &str,
        done: &IdempotencyDone,
    ) -> Result<(), StoreError> {
        let item = self.idempotency_item(tenant, done)?;
        match self
            .client
            .transact_write_items()
            .transact_items(item)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Err(StoreError::Conflict),
            Err(e) => Err(sdk_err(e)),
        }
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "DeleteItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "DeleteItem", ctxgate.store.call = "idempotency_release"))]
    async fn idempotency_release(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
    ) -> Result<(), StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("PK", s(idem_pk(tenant, key)))
            .key("SK", s("IDEM"))
            .condition_expression("#token = :t AND attribute_not_exists(#resp)")
            .expression_attribute_names("#token", "token")
            .expression_attribute_names("#resp", "response")
            .expression_attribute_values(":t", s(token))
            .send()
            .await;
        match out {
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(sdk_err(e))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "TransactWriteItems", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "TransactWriteItems", ctxgate.store.call = "put_key"))]
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

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "GetItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "GetItem", ctxgate.store.call = "key_by_hash"))]
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let item = self.get(format!("K#{hash}"), "KEY").await?;
        item.as_ref().map(parse_key).transpose()
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "Query", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "Query", ctxgate.store.call = "list_keys"))]
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

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "TransactWriteItems", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "TransactWriteItems", ctxgate.store.call = "revoke_key"))]
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

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "GetItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "GetItem", ctxgate.store.call = "get_key"))]
    async fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let item = self.get("KEYS", key_id).await?;
        item.as_ref().map(parse_key).transpose()
    }
}

/// A counter addition as DynamoDB expressions: the update, its condition
/// (if limited) and their values; `None` when `delta` alone passes the limit.
struct CounterExpr {
    update: &'static str,
    condition: Option<&'static str>,
    values: HashMap<String, AttributeValue>,
    names: Option<HashMap<String, String>>,
}

fn counter_expr(a: &CounterAdd) -> Option<CounterExpr> {
    let mut values = HashMap::from([(":d".to_owned(), n(a.delta))]);
    let mut names = None;
    let mut update = "ADD n :d";
    if let Some(e) = a.expires_at {
        update = "ADD n :d SET #ttl = :e";
        names = Some(HashMap::from([(
            "#ttl".to_owned(),
            TTL_ATTRIBUTE.to_owned(),
        )]));
        values.insert(":e".into(), n(e));
    }
    let mut condition = None;
    if let (Some(limit), true) = (a.limit, a.delta > 0) {
        // Conditions cannot add, so compare with limit - delta.
        let max = limit - a.delta;
        if max < 0 {
            return None;
        }
        condition = Some("attribute_not_exists(n) OR n <= :max");
        values.insert(":max".into(), n(max));
    }
    Some(CounterExpr {
        update,
        condition,
        values,
        names,
    })
}

/// Base of the backoff (ms) after a counter write lost to a transaction on
/// the same item (a usage flush, another reservation).
const COUNTER_BACKOFF_MS: u64 = 5;

impl DynamoStore {
    /// Several conditional counter additions in one transaction, all or none:
    /// the index of the first refused addition, if any.
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "TransactWriteItems", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "TransactWriteItems", ctxgate.store.call = "counters_add"))]
    async fn counters_transact(&self, adds: &[CounterAdd]) -> Result<Option<usize>, StoreError> {
        let mut items = Vec::with_capacity(adds.len());
        for (i, a) in adds.iter().enumerate() {
            let Some(x) = counter_expr(a) else {
                return Ok(Some(i));
            };
            let update = Update::builder()
                .table_name(&self.table)
                .key("PK", s(&a.key.pk))
                .key("SK", s(&a.key.sk))
                .update_expression(x.update)
                .set_condition_expression(x.condition.map(str::to_owned))
                .set_expression_attribute_names(x.names)
                .set_expression_attribute_values(Some(x.values))
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        let mut attempt = 0;
        loop {
            let sent = self
                .client
                .transact_write_items()
                // The SDK gives each attempt its own request token, so its
                // retries of one attempt apply it once.
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let e = match sent {
                Ok(_) => return Ok(None),
                Err(e) => e,
            };
            if let Some(i) = (0..adds.len()).find(|&i| failed_condition(&e, i)) {
                return Ok(Some(i));
            }
            // Cancelled by a concurrent transaction on one of the items
            // (a reservation or a usage flush of the same tenant): nothing
            // was written; try again after a jittered pause.
            if is_conflict(&e) {
                if attempt + 1 < MAX_WRITE_ATTEMPTS {
                    tokio::time::sleep(crate::retry::backoff(attempt, COUNTER_BACKOFF_MS)).await;
                    attempt += 1;
                    continue;
                }
                return Err(StoreError::Unavailable(
                    "counters stayed contended by concurrent transactions".into(),
                ));
            }
            return Err(sdk_err(e));
        }
    }
}

#[async_trait]
impl CounterStore for DynamoStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "UpdateItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "UpdateItem", ctxgate.store.call = "counter_add"))]
    async fn counter_add(
        &self,
        key: &CounterKey,
        delta: i64,
        limit: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let add = CounterAdd {
            key: key.clone(),
            delta,
            limit,
            expires_at,
        };
        let Some(x) = counter_expr(&add) else {
            return Ok(false);
        };
        let mut attempt = 0;
        loop {
            let sent = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("PK", s(&key.pk))
                .key("SK", s(&key.sk))
                .update_expression(x.update)
                .set_condition_expression(x.condition.map(str::to_owned))
                .set_expression_attribute_names(x.names.clone())
                .set_expression_attribute_values(Some(x.values.clone()))
                .send()
                .await;
            match sent {
                Ok(_) => return Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    return Ok(false);
                }
                // Lost to a transaction holding the item: nothing was
                // written, so the same addition is tried again.
                Err(e)
                    if attempt + 1 < MAX_WRITE_ATTEMPTS
                        && e.as_service_error()
                            .is_some_and(|s| s.is_transaction_conflict_exception()) =>
                {
                    tokio::time::sleep(crate::retry::backoff(attempt, COUNTER_BACKOFF_MS)).await;
                    attempt += 1;
                }
                Err(e) => return Err(sdk_err(e)),
            }
        }
    }

    async fn counters_add(&self, adds: &[CounterAdd]) -> Result<Option<usize>, StoreError> {
        // Counters on distinct items (a key's minute window, a tenant's day
        // budgets): one addition is an UpdateItem, more a transaction.
        match adds {
            [] => return Ok(None),
            [a] => {
                let made = self
                    .counter_add(&a.key, a.delta, a.limit, a.expires_at)
                    .await?;
                return Ok((!made).then_some(0));
            }
            _ => {}
        }
        self.counters_transact(adds).await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "GetItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "GetItem", ctxgate.store.call = "counter_get"))]
    async fn counter_get(&self, key: &CounterKey) -> Result<i64, StoreError> {
        let item = self.get(&key.pk, &key.sk).await?;
        Ok(item.as_ref().and_then(|i| opt_n(i, "n")).unwrap_or(0))
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "UpdateItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "UpdateItem", ctxgate.store.call = "add_usage"))]
    async fn add_usage(&self, tenant: &str, row: &UsageRow) -> Result<(), StoreError> {
        let (expr, names, values) = usage_update(row);
        let (pk, sk) = usage_key(tenant, row);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", pk)
            .key("SK", sk)
            .update_expression(expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "TransactWriteItems", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "TransactWriteItems", ctxgate.store.call = "add_usage_batch"))]
    async fn add_usage_batch(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // The marker comes first and is written only if the batch id is new:
        // the batch applies once, however often a flush of unknown outcome
        // is retried (and however late: the marker outlives any retry).
        let marker = Item::from([
            ("PK".to_string(), s(format!("F#{}", batch.id))),
            ("SK".to_string(), s("FLUSH")),
            (
                TTL_ATTRIBUTE.to_string(),
                n(crate::now_secs() + FLUSH_MARKER_SECS),
            ),
        ]);
        let mut items = vec![self.put(marker, "attribute_not_exists(PK)", None)?];
        for (tenant, row) in &batch.rows {
            items.push(self.usage_item(tenant, row)?);
        }
        for (key, delta) in &batch.counters {
            let update = Update::builder()
                .table_name(&self.table)
                .key("PK", s(&key.pk))
                .key("SK", s(&key.sk))
                .update_expression("ADD n :d")
                .expression_attribute_values(":d", n(*delta))
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Applied by an earlier attempt whose answer was lost.
            Err(e) if failed_condition(&e, 0) => Ok(()),
            Err(e) if is_conflict(&e) => Err(StoreError::Conflict),
            Err(e) => Err(sdk_err(e)),
        }
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "Query", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "Query", ctxgate.store.call = "usage"))]
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

/// The partition holding a tenant's MCP servers (one Query lists them).
fn response_pk(tenant: &str, id: &str) -> String {
    format!("T#{tenant}#R#{id}")
}

/// A response record: a JSON `doc`, with the conversation's expiry as its TTL.
fn response_item(tenant: &str, r: &ResponseRecord) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(r).map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut item = Item::new();
    item.insert("PK".into(), s(response_pk(tenant, &r.id)));
    item.insert("SK".into(), s("RESP"));
    item.insert("doc".into(), s(doc));
    if let Some(e) = r.expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(e));
    }
    Ok(item)
}

fn mcp_pk(tenant: &str) -> String {
    format!("T#{tenant}#MCP")
}

/// An MCP server item: the record as a JSON `doc`, its `version` beside it
/// for the update's condition.
fn mcp_item(tenant: &str, r: &McpServerRecord) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(r).map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut item = Item::new();
    item.insert("PK".into(), s(mcp_pk(tenant)));
    item.insert("SK".into(), s(&r.name));
    item.insert("doc".into(), s(doc));
    item.insert("version".into(), n(r.version));
    Ok(item)
}

fn parse_mcp(item: &Item) -> Result<McpServerRecord, StoreError> {
    serde_json::from_str(&get_s(item, "doc")?).map_err(|_| bad("doc"))
}

/// The partition holding a tenant's audit rows of one UTC day (`YYYY-MM-DD`
/// of the call's start): a day's rows are one Query, and no partition grows
/// without bound.
fn audit_pk(tenant: &str, at_ms: i64) -> String {
    let day = at_ms.div_euclid(86_400_000);
    let date = time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    format!(
        "T#{tenant}#A#{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

fn audit_item(tenant: &str, r: &AuditRecord) -> Item {
    let mut item = Item::new();
    item.insert("PK".into(), s(audit_pk(tenant, r.at_ms)));
    item.insert("SK".into(), s(&r.id));
    item.insert("key_id".into(), s(&r.key_id));
    item.insert("server".into(), s(&r.server));
    item.insert("tool".into(), s(&r.tool));
    item.insert("at_ms".into(), n(r.at_ms));
    item.insert("duration_ms".into(), n(r.duration_ms));
    item.insert("outcome".into(), s(&r.outcome));
    item.insert(TTL_ATTRIBUTE.into(), n(r.expires_at));
    item
}

fn parse_audit(item: &Item) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: get_s(item, "SK")?,
        key_id: get_s(item, "key_id")?,
        server: get_s(item, "server")?,
        tool: get_s(item, "tool")?,
        at_ms: get_n(item, "at_ms")?,
        duration_ms: get_n(item, "duration_ms")?,
        outcome: get_s(item, "outcome")?,
        expires_at: get_n(item, TTL_ATTRIBUTE)?,
    })
}

#[async_trait]
impl AuditStore for DynamoStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "PutItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "PutItem", ctxgate.store.call = "record_call"))]
    async fn record_call(&self, tenant: &str, record: &AuditRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(audit_item(tenant, record)))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "Query", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "Query", ctxgate.store.call = "list_calls"))]
    async fn list_calls(
        &self,
        tenant: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError> {
        let low = super::audit::lower_bound(from_ms);
        let high = super::audit::upper_bound(to_ms, before);
        let mut page = AuditPage::default();
        if low >= high {
            return Ok(page);
        }
        // The newest millisecond the range may hold picks the first day.
        let high_ms: i64 = high
            .get(..13)
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| bad("cursor"))?;
        let mut day = high_ms.div_euclid(86_400_000);
        let first_day = from_ms.max(0).div_euclid(86_400_000);
        while day >= first_day {
            // BETWEEN is inclusive: `high` itself (a cursor's row) is skipped below.
            let mut items = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(audit_pk(tenant, day * 86_400_000)))
                .expression_attribute_values(":lo", s(&low))
                .expression_attribute_values(":hi", s(&high))
                .scan_index_forward(false)
                .limit(i32::try_from(limit + 2).unwrap_or(i32::MAX))
                .into_paginator()
                .items()
                .send();
            while let Some(item) = items.next().await {
                let record = parse_audit(&item.map_err(sdk_err)?)?;
                if record.id == high {
                    continue;
                }
                if page.records.len() == limit {
                    page.has_more = true;
                    return Ok(page);
                }
                page.records.push(record);
            }
            day -= 1;
        }
        Ok(page)
    }
}

fn condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.code() == Some("ConditionalCheckFailedException"))
}

#[async_trait]
impl McpServerStore for DynamoStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "PutItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "PutItem", ctxgate.store.call = "create_mcp_server"))]
    async fn create_mcp_server(
        &self,
        tenant: &str,
        record: &McpServerRecord,
    ) -> Result<(), StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(mcp_item(tenant, record)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(StoreError::Exists),
            Err(e) => Err(sdk_err(e)),
        }
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "GetItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "GetItem", ctxgate.store.call = "get_mcp_server"))]
    async fn get_mcp_server(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<McpServerRecord>, StoreError> {
        let item = self.get(mcp_pk(tenant), name).await?;
        item.as_ref().map(parse_mcp).transpose()
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "Query", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "Query", ctxgate.store.call = "list_mcp_servers"))]
    async fn list_mcp_servers(&self, tenant: &str) -> Result<Vec<McpServerRecord>, StoreError> {
        let mut out = Vec::new();
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(mcp_pk(tenant)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            out.push(parse_mcp(&item.map_err(sdk_err)?)?);
        }
        // The sort key is the name, so this is already in order; sorting
        // keeps the contract independent of the key's byte order.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "PutItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "PutItem", ctxgate.store.call = "update_mcp_server"))]
    async fn update_mcp_server(
        &self,
        tenant: &str,
        record: &McpServerRecord,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(mcp_item(tenant, record)?))
            .condition_expression("attribute_exists(PK) AND version = :v")
            .expression_attribute_values(":v", n(expected))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => {
                // Missing, or changed since it was read: tell them apart.
                match self.get(mcp_pk(tenant), &record.name).await? {
                    None => Ok(false),
                    Some(_) => Err(StoreError::Conflict),
                }
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "DeleteItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "DeleteItem", ctxgate.store.call = "delete_mcp_server"))]
    async fn delete_mcp_server(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("PK", s(mcp_pk(tenant)))
            .key("SK", s(name))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

#[async_trait]
impl ResponseStore for DynamoStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "GetItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "GetItem", ctxgate.store.call = "get_response"))]
    async fn get_response(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<ResponseRecord>, StoreError> {
        let Some(item) = self.get(response_pk(tenant, id), "RESP").await? else {
            return Ok(None);
        };
        let r: ResponseRecord =
            serde_json::from_str(&get_s(&item, "doc")?).map_err(|_| bad("doc"))?;
        Ok(r.is_live(now).then_some(r))
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "DeleteItem", otel.kind = "client", db.system.name = "aws.dynamodb", db.operation.name = "DeleteItem", ctxgate.store.call = "delete_response"))]
    async fn delete_response(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("PK", s(response_pk(tenant, id)))
            .key("SK", s("RESP"))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
