//! `GET /v1/models`: configured models and aliases, in OpenAI's list format,
//! or in Anthropic's (paginated, `data`, `has_more`, `first_id`, `last_id`)
//! when the request carries `anthropic-version`, as Anthropic's SDKs send.

use std::sync::Arc;

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::{RequestLog, authenticated, with_log};
use crate::error::Dialect;
use crate::wire::openai_chat::types::{ModelEntry, ModelList};
use crate::{ApiError, AppState};

/// Lists models; any valid key may call it.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(page): Query<HashMap<String, String>>,
) -> Response {
    let mut log = RequestLog::default();
    let anthropic = headers.contains_key(ANTHROPIC_VERSION);
    let resp = match list_inner(&state, &headers, &mut log).await {
        Ok(list) if anthropic => match anthropic_page(&list, state.started, &page) {
            Ok(body) => Json(body).into_response(),
            Err(e) => e.render(Dialect::Anthropic),
        },
        Ok(list) => Json(list).into_response(),
        Err(e) if anthropic => e.render(Dialect::Anthropic),
        Err(e) => e.into_response(),
    };
    with_log(resp, log)
}

/// The header Anthropic's clients send with every request.
const ANTHROPIC_VERSION: &str = "anthropic-version";

/// One page of the list in Anthropic's shape: `limit` (1 to 1000, default
/// 20) entries after `after_id` or before `before_id`.
fn anthropic_page(
    list: &ModelList,
    started: i64,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let limit = match query.get("limit") {
        None => 20,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("limit", "'limit' must be an integer from 1 to 1000")
            })?,
    };
    let position = |param: &str, id: &str| {
        list.data
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| ApiError::invalid(param, format!("no model '{id}'")))
    };
    let ids: Vec<&ModelEntry> = match (query.get("after_id"), query.get("before_id")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "before_id",
                "give 'after_id' or 'before_id', not both",
            ));
        }
        (Some(after), None) => {
            let i = position("after_id", after)?;
            list.data.iter().skip(i + 1).take(limit).collect()
        }
        (None, Some(before)) => {
            let i = position("before_id", before)?;
            list.data[i.saturating_sub(limit)..i].iter().collect()
        }
        (None, None) => list.data.iter().take(limit).collect(),
    };
    let created = time::OffsetDateTime::from_unix_timestamp(started)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let last = ids.last().map(|m| m.id.clone());
    let has_more = match &last {
        Some(id) => list.data.last().is_some_and(|m| &m.id != id),
        None => false,
    };
    let data: Vec<Value> = ids
        .iter()
        .map(|m| json!({"type": "model", "id": m.id, "display_name": m.id, "created_at": created}))
        .collect();
    Ok(json!({
        "data": data,
        "has_more": has_more,
        "first_id": ids.first().map(|m| m.id.clone()),
        "last_id": last,
    }))
}

async fn list_inner(
    state: &AppState,
    headers: &HeaderMap,
    log: &mut RequestLog,
) -> Result<ModelList, ApiError> {
    authenticated(state, headers, log).await?;
    let cfg = &state.config;
    let entry = |id: &str, owner: &str| ModelEntry {
        id: id.to_owned(),
        object: "model".into(),
        created: state.started,
        owned_by: owner.to_owned(),
    };
    let mut data: Vec<ModelEntry> = cfg
        .models
        .iter()
        .map(|m| entry(m, cfg.split_model(m).map_or("ctxgate", |(p, _)| p)))
        .collect();
    // An alias of one model is owned by its provider; a fallback chain by the gateway.
    data.extend(
        cfg.aliases
            .iter()
            .map(|(alias, chain)| match chain.as_slice() {
                [one] => entry(alias, cfg.split_model(one).map_or("ctxgate", |(p, _)| p)),
                _ => entry(alias, "ctxgate"),
            }),
    );
    Ok(ModelList {
        object: "list".into(),
        data,
    })
}
