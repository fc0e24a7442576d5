//! The admin key API: create, list and revoke API keys. Needs `admin`; an
//! admin manages its own tenant's keys only, unless it holds `superadmin`
//! (which only the CLI can grant).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::{PathId, QueryMap, RequestLog, read_json_body, with_log};
use crate::auth::{self, KeySpec, Principal, SCOPE_ADMIN, SCOPE_SUPERADMIN, grant};
use crate::store::ApiKeyRecord;
use crate::{ApiError, AppState, now_secs, validate};

/// A key as the API shows it: never the secret or its hash.
#[derive(Debug, Serialize)]
pub struct KeyView {
    /// Always `api_key`.
    pub object: &'static str,
    /// Key id.
    pub id: String,
    /// The secret, present only in the creation response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Owning tenant.
    pub tenant: String,
    /// Label.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Allowed models (empty: all).
    pub models: Vec<String>,
    /// Requests per minute, if set.
    pub rpm: Option<u32>,
    /// MCP servers chat requests use when they name none.
    pub mcp_servers: Vec<String>,
    /// Globs over the federated tools (`{server}__{tool}`) the key may use
    /// through `/mcp` (empty: all).
    pub mcp_tools: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(k: ApiKeyRecord) -> Self {
        Self {
            object: "api_key",
            id: k.key_id,
            key: None,
            tenant: k.tenant,
            name: k.name,
            scopes: k.scopes,
            models: k.models,
            rpm: k.rpm,
            mcp_servers: k.mcp_servers,
            mcp_tools: k.mcp_tools,
            created: k.created,
            expires_at: k.valid_until,
            revoked: k.revoked,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    tenant: Option<String>,
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    rpm: Option<u32>,
    expires_in_days: Option<u32>,
    #[serde(default)]
    mcp_servers: Vec<String>,
    #[serde(default)]
    mcp_tools: Vec<String>,
}

async fn admin(
    state: &AppState,
    headers: &HeaderMap,
    log: &mut RequestLog,
) -> Result<Principal, ApiError> {
    super::caller(state, headers, SCOPE_ADMIN, log).await
}

/// The tenant an admin acts on: its own, or any with `superadmin`.
fn target_tenant(p: &Principal, requested: Option<String>) -> Result<String, ApiError> {
    match requested {
        Some(t) if t != p.tenant => {
            p.require(SCOPE_SUPERADMIN)?;
            Ok(t)
        }
        _ => Ok(p.tenant.clone()),
    }
}

/// `POST /v1/admin/keys`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let resp = create_inner(&state, &headers, body, &mut log)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    with_log(resp, log)
}

async fn create_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let p = admin(state, headers, log).await?;
    let bytes = read_json_body(headers, body, 64 * 1024).await?;
    let value = validate::check_json_body(&bytes)?;
    let req: CreateKey = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        let param = match inner
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            Some(field) => field.to_owned(),
            None if path == "." => inner.split('`').nth(1).unwrap_or_default().to_owned(),
            None => path,
        };
        ApiError::invalid(param, format!("invalid value: {inner}"))
    })?;
    if req.scopes.iter().any(|s| s == SCOPE_SUPERADMIN) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "insufficient_scope",
            "the superadmin scope can only be granted with the ctxgate CLI",
        )
        .with_param("scopes"));
    }
    if let Some(bad) = req
        .scopes
        .iter()
        .find(|s| !auth::KNOWN_SCOPES.contains(&s.as_str()))
    {
        return Err(ApiError::invalid(
            "scopes",
            format!(
                "unknown scope '{bad}' (known: {})",
                auth::KNOWN_SCOPES.join(", ")
            ),
        ));
    }
    for (i, m) in req.models.iter().enumerate() {
        if state.providers.resolve(m).is_none() {
            return Err(ApiError::invalid(
                format!("models[{i}]"),
                format!("the model '{m}' does not exist on this gateway"),
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, s) in req.mcp_servers.iter().enumerate() {
        if !crate::mcp::registry::is_server_name(s) {
            return Err(ApiError::invalid(
                format!("mcp_servers[{i}]"),
                "server names are 1-32 characters from a-z, 0-9 and '-'",
            ));
        }
        if !seen.insert(s.as_str()) {
            return Err(ApiError::invalid(
                format!("mcp_servers[{i}]"),
                format!("'{s}' is named twice"),
            ));
        }
    }
    if req.mcp_servers.len() > crate::mcp::registry::MAX_SERVERS_PER_REQUEST {
        return Err(ApiError::invalid(
            "mcp_servers",
            format!(
                "at most {} MCP servers",
                crate::mcp::registry::MAX_SERVERS_PER_REQUEST
            ),
        ));
    }
    for (i, g) in req.mcp_tools.iter().enumerate() {
        if !crate::mcp::names::is_tool_glob(g) {
            return Err(ApiError::invalid(
                format!("mcp_tools[{i}]"),
                "globs are 1-128 characters from A-Z, a-z, 0-9, '_', '*', '.' and '-'",
            ));
        }
    }
    if req.mcp_tools.len() > crate::mcp::names::MAX_TOOL_GLOBS {
        return Err(ApiError::invalid(
            "mcp_tools",
            format!("at most {} globs", crate::mcp::names::MAX_TOOL_GLOBS),
        ));
    }
    if req.rpm == Some(0) {
        return Err(ApiError::invalid(
            "rpm",
            "rpm must be at least 1 (omit it for the default)",
        ));
    }
    let tenant = target_tenant(&p, req.tenant)?;
    let now = now_secs();
    let spec = KeySpec {
        tenant,
        name: req.name,
        scopes: req.scopes,
        models: req.models,
        rpm: req.rpm,
        valid_until: req.expires_in_days.map(|d| now + i64::from(d) * 86_400),
        mcp_servers: req.mcp_servers,
        mcp_tools: req.mcp_tools,
    };
    let mut new = auth::mint(&spec, now).map_err(|m| {
        let param = if m.starts_with("tenant") {
            "tenant"
        } else if m.starts_with("key names") {
            "name"
        } else {
            "scopes"
        };
        ApiError::invalid(param, m)
    })?;
    // An admin cannot hand out more than it holds, in any limit (a request
    // naming no scope gets the default ones, which it must hold too).
    let rec = &mut new.record;
    let bounded = grant::bound(
        &p,
        grant::Requested {
            scopes: std::mem::take(&mut rec.scopes),
            models: std::mem::take(&mut rec.models),
            rpm: rec.rpm,
            valid_until: rec.valid_until,
            mcp_tools: std::mem::take(&mut rec.mcp_tools),
        },
        state.config.limits.requests_per_minute,
        |m| {
            state
                .providers
                .route(m)
                .map(|chain| chain.into_iter().map(|r| r.id).collect())
        },
    )
    .map_err(|e| {
        let code = match e.param {
            "scopes" => "insufficient_scope",
            _ => "exceeds_credential",
        };
        ApiError::new(StatusCode::FORBIDDEN, "permission_error", code, e.message)
            .with_param(e.param)
    })?;
    rec.scopes = bounded.scopes;
    rec.models = bounded.models;
    rec.rpm = bounded.rpm;
    rec.valid_until = bounded.valid_until;
    rec.mcp_tools = bounded.mcp_tools;
    state.store.put_key(&new.record).await?;
    tracing::info!(key_id = %new.record.key_id, key_tenant = %new.record.tenant, "api key created");
    let mut view = KeyView::from(new.record);
    view.key = Some(new.secret);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/admin/keys[?tenant=]`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    QueryMap(q): QueryMap,
) -> Response {
    let mut log = RequestLog::default();
    let resp = async {
        let p = admin(&state, &headers, &mut log).await?;
        let tenant = target_tenant(&p, q.get("tenant").cloned())?;
        let keys = state.store.list_keys(Some(&tenant)).await?;
        let data: Vec<KeyView> = keys.into_iter().map(KeyView::from).collect();
        Ok::<_, ApiError>(Json(serde_json::json!({"object": "list", "data": data})).into_response())
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    with_log(resp, log)
}

/// `DELETE /v1/admin/keys/{id}`: revokes; warm processes notice within the key cache time.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Response {
    let mut log = RequestLog::default();
    let resp = async {
        let p = admin(&state, &headers, &mut log).await?;
        let missing = || ApiError::not_found("id", format!("no key with id '{id}'"));
        let key = state.store.get_key(&id).await?.ok_or_else(missing)?;
        // Another tenant's key looks exactly like a missing one.
        if key.tenant != p.tenant && !p.has(SCOPE_SUPERADMIN) {
            return Err(missing());
        }
        if !grant::may_manage(&p, &key.scopes) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                "insufficient_scope",
                "a superadmin key can only be revoked by a superadmin or the ctxgate CLI",
            )
            .with_param("id"));
        }
        state.store.revoke_key(&id).await?;
        state.auth.keys.forget(&key.hash);
        tracing::info!(key_id = %id, "api key revoked");
        let mut view = KeyView::from(key);
        view.revoked = true;
        Ok::<_, ApiError>(Json(view).into_response())
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    with_log(resp, log)
}
