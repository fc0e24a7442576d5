//! `GET /v1/models`: configured models and aliases in OpenAI's list format.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use super::{RequestLog, authenticated, with_log};
use crate::wire::openai_chat::types::{ModelEntry, ModelList};
use crate::{ApiError, AppState};

/// Lists models; any valid key may call it.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut log = RequestLog::default();
    let resp = match list_inner(&state, &headers, &mut log).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => e.into_response(),
    };
    with_log(resp, log)
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
