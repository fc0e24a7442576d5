//! `GET /v1/admin/mcp-calls`: the audit of federated MCP tool calls, per
//! tenant (`admin` scope, own tenant only), newest first, by time range.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{QueryMap, RequestLog};
use crate::auth::SCOPE_ADMIN;
use crate::store::AuditRecord;
use crate::{ApiError, AppState};

/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most rows per page.
pub const MAX_LIMIT: usize = 500;
/// The range when `from` is not given: the last 24 hours.
const DEFAULT_RANGE_MS: i64 = 24 * 3600 * 1000;

/// One audited call as the API shows it: never arguments or results.
#[derive(Debug, Serialize)]
pub struct CallView {
    /// Always `mcp_call`.
    pub object: &'static str,
    /// The row's id (sorts by time).
    pub id: String,
    /// The calling key's id (`jwt:{sub}` for a token).
    pub key_id: String,
    /// The server (empty for an unknown tool).
    pub server: String,
    /// The tool's name on its server (the name asked for, for an unknown tool).
    pub tool: String,
    /// When the call started, Unix milliseconds.
    pub at_ms: i64,
    /// How long it took, milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: String,
}

impl From<AuditRecord> for CallView {
    fn from(r: AuditRecord) -> Self {
        Self {
            object: "mcp_call",
            id: r.id,
            key_id: r.key_id,
            server: r.server,
            tool: r.tool,
            at_ms: r.at_ms,
            duration_ms: r.duration_ms,
            outcome: r.outcome,
        }
    }
}

/// `GET /v1/admin/mcp-calls?from=&to=&limit=&cursor=`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    QueryMap(q): QueryMap,
) -> Response {
    let mut log = RequestLog::default();
    let r = async {
        let p = super::caller(&state, &headers, SCOPE_ADMIN, &mut log).await?;
        let now = now_ms();
        let to = match q.get("to") {
            Some(v) => instant("to", v)?,
            None => now,
        };
        let from = match q.get("from") {
            Some(v) => instant("from", v)?,
            None => to - DEFAULT_RANGE_MS,
        };
        if from >= to {
            return Err(ApiError::invalid("from", "'from' must be before 'to'"));
        }
        // Rows older than the retention are gone anyway; a bound keeps a
        // listing to a bounded number of day partitions.
        let max_days = i64::from(state.config.mcp.audit_retention_days.max(1)) + 1;
        if to - from > max_days * 86_400_000 {
            return Err(ApiError::invalid(
                "from",
                format!("the range may span at most {max_days} days"),
            ));
        }
        let limit = page_limit(&q)?;
        let tag = tag(&p.tenant);
        let before = match q.get("cursor") {
            Some(raw) => Some(decode_cursor(raw, &tag)?),
            None => None,
        };
        // Audit rows are written after their answers; this process's own
        // go first, so one server lists the calls it just answered.
        state.usage.spawned_writes().await;
        let page = state
            .store
            .list_calls(&p.tenant, from, to, limit, before.as_deref())
            .await?;
        let next_cursor = match (page.has_more, page.records.last()) {
            (true, Some(last)) => Some(encode_cursor(&Cursor {
                t: tag,
                b: last.id.clone(),
            })),
            _ => None,
        };
        let data: Vec<CallView> = page.records.into_iter().map(CallView::from).collect();
        Ok(Json(serde_json::json!({
            "object": "list",
            "data": data,
            "has_more": page.has_more,
            "next_cursor": next_cursor,
        }))
        .into_response())
    }
    .await;
    super::logged(r, log)
}

/// An RFC 3339 timestamp as Unix milliseconds.
fn instant(field: &'static str, v: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("'{field}' must be an RFC 3339 timestamp such as 2026-07-28T12:00:00Z"),
            )
        })
}

fn page_limit(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    super::cursor::page_limit(q, DEFAULT_LIMIT, MAX_LIMIT)
}

/// A page's position, bound to the tenant it was issued to.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// Tag of the tenant.
    t: String,
    /// The id of the last row shown.
    b: String,
}

fn tag(tenant: &str) -> String {
    super::cursor::tag("ctxgate-mcp-calls-cursor", &[tenant])
}

fn encode_cursor(c: &Cursor) -> String {
    super::cursor::encode(c)
}

/// The row id a cursor points past; refused unless it was issued to this
/// tenant and holds a well-formed id.
fn decode_cursor(raw: &str, expected_tag: &str) -> Result<String, ApiError> {
    let c: Cursor = super::cursor::decode(raw)?;
    let well_formed = c.b.len() <= 64
        && c.b.len() > 14
        && c.b.as_bytes()[..13].iter().all(u8::is_ascii_digit)
        && c.b.as_bytes()[13] == b'#'
        && c.b[14..].bytes().all(|b| b.is_ascii_hexdigit());
    if c.t != expected_tag || !well_formed {
        return Err(super::cursor::invalid());
    }
    Ok(c.b)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_their_tenant_and_well_formed() {
        let id = AuditRecord::new_id(1_700_000_000_000);
        let c = encode_cursor(&Cursor {
            t: tag("a"),
            b: id.clone(),
        });
        assert_eq!(decode_cursor(&c, &tag("a")).unwrap(), id);
        assert!(decode_cursor(&c, &tag("b")).is_err());
        let forged = encode_cursor(&Cursor {
            t: tag("a"),
            b: "0".into(),
        });
        assert!(decode_cursor(&forged, &tag("a")).is_err());
        assert!(decode_cursor("%%%", &tag("a")).is_err());
    }

    #[test]
    fn instants_are_rfc3339() {
        assert_eq!(instant("from", "1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            instant("to", "2026-07-28T12:00:00.5+00:00").unwrap() % 1000,
            500
        );
        assert!(instant("from", "1700000000").is_err());
        assert!(instant("from", "yesterday").is_err());
    }
}
