//! `GET /v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD`: the caller's tenant's
//! tokens and estimated cost per day and model.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use super::{QueryMap, RequestLog, authenticated, with_log};
use crate::auth::{Principal, SCOPE_ADMIN, SCOPE_USAGE_READ};
use crate::{ApiError, AppState, now_secs, usage};

/// Longest range one call may ask for.
pub const MAX_DAYS: i64 = 366;

/// The usage handler.
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    QueryMap(q): QueryMap,
) -> Response {
    let mut log = RequestLog::default();
    let resp = async {
        let p = authenticated(&state, &headers, &mut log).await?;
        if !p.has(SCOPE_ADMIN) {
            p.require(SCOPE_USAGE_READ)?;
        }
        Ok::<_, ApiError>(Json(report(&state, &p, &q).await?).into_response())
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    with_log(resp, log)
}

/// The tenant's usage rows from `from` to `to` (`YYYY-MM-DD`; default the
/// last 30 days); the caller checked the scope.
pub async fn report(
    state: &AppState,
    p: &Principal,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let now = now_secs();
    let day = |name: &str| -> Result<Option<time::Date>, ApiError> {
        match q.get(name) {
            None => Ok(None),
            Some(v) => usage::parse_day(v).map(Some).ok_or_else(|| {
                ApiError::invalid(name, format!("'{name}' must be a date as YYYY-MM-DD"))
            }),
        }
    };
    let today = usage::parse_day(&usage::day(now)).ok_or_else(ApiError::internal)?;
    let to = day("to")?.unwrap_or(today);
    let from = day("from")?.unwrap_or(to - time::Duration::days(29));
    if from > to {
        return Err(ApiError::invalid("from", "'from' must not be after 'to'"));
    }
    if (to - from).whole_days() >= MAX_DAYS {
        return Err(ApiError::invalid(
            "from",
            format!("at most {MAX_DAYS} days per request"),
        ));
    }
    let (from, to) = (usage::format_day(from), usage::format_day(to));
    // Rows are written in batches (eventually consistent within the flush
    // interval); this process's own go first, so one server reads its turns.
    if let Err(e) = state.usage.flush().await {
        tracing::warn!(error = %e, "usage flush before a read failed");
    }
    let rows = state.store.usage(&p.tenant, &from, &to).await?;
    let data: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["cost_usd"] = json!(r.cost_micro_usd as f64 / 1e6);
            v
        })
        .collect();
    Ok(json!({"object": "list", "tenant": p.tenant, "from": from, "to": to, "data": data}))
}
