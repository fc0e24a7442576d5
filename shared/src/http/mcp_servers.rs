//! The admin API of a tenant's MCP servers: register, list, read, change and
//! remove them. Needs `admin`, and acts on the caller's own tenant only:
//! another tenant's server looks exactly like a missing one. Header values
//! are write-only: they go to the credentials store, and only their names
//! to the table and to responses.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{RequestLog, read_json_body};
use crate::auth::SCOPE_ADMIN;
use crate::config::McpServerConfig;
use crate::mcp::registry::{self, Invalid, ServerRecord};
use crate::store::StoreError;
use crate::{ApiError, AppState, now_secs, validate};

/// The `{name}` path parameter, its rejection in the JSON envelope naming `name`.
pub struct PathName(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathName {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(name)) => Ok(Self(name)),
            Err(e) => Err(ApiError::invalid(
                "name",
                format!("invalid path parameter: {}", e.body_text()),
            )),
        }
    }
}

/// Largest request body: Secrets Manager keeps at most 64 KiB per secret.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A server as the API shows it: header names, never values.
#[derive(Debug, Serialize)]
pub struct ServerView {
    /// Always `mcp_server`.
    pub object: &'static str,
    /// The tenant's name for it.
    pub name: String,
    /// Its Streamable HTTP endpoint.
    pub url: String,
    /// Names of the headers sent to it.
    pub headers: Vec<String>,
    /// Tool names or globs the model may use; `null`: every tool.
    pub allowed_tools: Option<Vec<String>>,
    /// A call's time limit in seconds; `null`: the configured default.
    pub timeout_seconds: Option<u64>,
    /// `api` (registered here) or `config` (declared in the config file, read-only).
    pub source: &'static str,
    /// Unix seconds (`null` for config-declared servers).
    pub created: Option<i64>,
    /// Unix seconds of the last change (`null` for config-declared servers).
    pub updated: Option<i64>,
}

impl From<ServerRecord> for ServerView {
    fn from(r: ServerRecord) -> Self {
        Self {
            object: "mcp_server",
            name: r.name,
            url: r.url,
            headers: r.headers,
            allowed_tools: r.allowed_tools,
            timeout_seconds: r.timeout_seconds,
            source: "api",
            created: Some(r.created),
            updated: Some(r.updated),
        }
    }
}

fn declared_view(name: &str, s: &McpServerConfig) -> ServerView {
    ServerView {
        object: "mcp_server",
        name: name.to_owned(),
        url: s.url.clone(),
        headers: s.headers.keys().cloned().collect(),
        allowed_tools: s.allowed_tools.clone(),
        timeout_seconds: s.timeout_seconds,
        source: "config",
        created: None,
        updated: None,
    }
}

/// The servers `tenant` declares in the config file.
fn declared<'a>(
    state: &'a AppState,
    tenant: &str,
) -> Option<&'a BTreeMap<String, McpServerConfig>> {
    state.config.tenants.get(tenant).map(|t| &t.mcp_servers)
}

fn invalid(e: Invalid) -> ApiError {
    ApiError::invalid(e.field, e.message)
}

fn missing(name: &str) -> ApiError {
    ApiError::not_found("name", format!("no MCP server named '{name}'"))
}

fn read_only(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "invalid_request_error",
        "read_only",
        format!(
            "the MCP server '{name}' is declared in the config file and cannot be changed here"
        ),
    )
    .with_param("name")
}

fn duplicate(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "invalid_request_error",
        "already_exists",
        format!("an MCP server named '{name}' already exists"),
    )
    .with_param("name")
}

fn credentials_failed(e: crate::mcp::credentials::CredentialsError) -> ApiError {
    tracing::warn!(error = %e, "mcp credentials store failed");
    let mut err = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "credentials_unavailable",
        "the credentials store is unavailable; retry shortly",
    );
    err.retry_after = Some("1".into());
    err
}

/// The fields a body may hold, as it holds them.
#[derive(Default)]
struct Fields {
    name: Option<String>,
    url: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    /// `Some(None)`: given as `null`.
    allowed_tools: Option<Option<Vec<String>>>,
    timeout_seconds: Option<Option<u64>>,
}

/// Reads the body's fields with their types, naming any that is unknown or
/// of the wrong type; `allowed` lists the fields this method takes.
fn fields(body: Value, allowed: &[&str]) -> Result<Fields, ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError::invalid("body", "the body must be a JSON object"));
    };
    let mut f = Fields::default();
    for (key, value) in map {
        if !allowed.contains(&key.as_str()) {
            return Err(ApiError::invalid(
                key.clone(),
                format!("unknown field '{key}' (known: {})", allowed.join(", ")),
            ));
        }
        match key.as_str() {
            "name" => f.name = Some(string(&key, value)?),
            "url" => f.url = Some(string(&key, value)?),
            "headers" => f.headers = Some(headers(value)?),
            "allowed_tools" => f.allowed_tools = Some(tools(value)?),
            "timeout_seconds" => {
                f.timeout_seconds = Some(match value {
                    Value::Null => None,
                    v => Some(v.as_u64().ok_or_else(|| {
                        ApiError::invalid(key.clone(), "must be a whole number of seconds")
                    })?),
                })
            }
            _ => {}
        }
    }
    Ok(f)
}

fn string(key: &str, v: Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(ApiError::invalid(key, "must be a string")),
    }
}

fn headers(v: Value) -> Result<BTreeMap<String, String>, ApiError> {
    let Value::Object(map): Value = v else {
        return Err(ApiError::invalid(
            "headers",
            "must be an object of header names to values",
        ));
    };
    let map: Map<String, Value> = map;
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(ApiError::invalid(
                format!("headers.{k}"),
                "must be a string",
            )),
        })
        .collect()
}

fn tools(v: Value) -> Result<Option<Vec<String>>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, t)| match t {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::invalid(
                    format!("allowed_tools[{i}]"),
                    "must be a string",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(ApiError::invalid(
            "allowed_tools",
            "must be an array of tool names or globs, or null",
        )),
    }
}

/// Checks the fields that are present against the registration rules.
fn check(state: &AppState, f: &Fields) -> Result<(), ApiError> {
    if let Some(n) = &f.name {
        registry::check_name(n).map_err(invalid)?;
    }
    if let Some(u) = &f.url {
        registry::check_url(u, &state.config.mcp.allowed_hosts).map_err(invalid)?;
    }
    if let Some(h) = &f.headers {
        registry::check_headers(h).map_err(invalid)?;
    }
    if let Some(Some(t)) = &f.allowed_tools {
        registry::check_allowed_tools(t).map_err(invalid)?;
    }
    if let Some(Some(t)) = f.timeout_seconds {
        registry::check_timeout(t).map_err(invalid)?;
    }
    Ok(())
}

async fn body_fields(
    headers: &HeaderMap,
    body: Body,
    allowed: &[&str],
) -> Result<Fields, ApiError> {
    let bytes = read_json_body(headers, body, MAX_BODY_BYTES).await?;
    let value = validate::check_json_body(&bytes)?;
    fields(value, allowed)
}

/// `POST /v1/admin/mcp-servers`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let r = create_inner(&state, &headers, body, &mut log).await;
    super::logged(r, log)
}

async fn create_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let p = super::caller(state, headers, SCOPE_ADMIN, log).await?;
    let f = body_fields(
        headers,
        body,
        &["name", "url", "headers", "allowed_tools", "timeout_seconds"],
    )
    .await?;
    let name = f
        .name
        .clone()
        .ok_or_else(|| ApiError::invalid("name", "missing field 'name'"))?;
    let url = f
        .url
        .clone()
        .ok_or_else(|| ApiError::invalid("url", "missing field 'url'"))?;
    check(state, &f)?;
    let tenant = p.tenant.as_str();
    if declared(state, tenant).is_some_and(|d| d.contains_key(&name))
        || state.store.get_mcp_server(tenant, &name).await?.is_some()
    {
        return Err(duplicate(&name));
    }
    let values = f.headers.unwrap_or_default();
    let now = now_secs();
    let record = ServerRecord {
        name: name.clone(),
        url,
        headers: values.keys().cloned().collect(),
        allowed_tools: f.allowed_tools.flatten(),
        timeout_seconds: f.timeout_seconds.flatten(),
        created: now,
        updated: now,
        version: 1,
    };
    // The values first, so a record never names headers whose values are missing.
    if !values.is_empty() {
        state
            .mcp
            .credentials
            .put(tenant, &name, &values)
            .await
            .map_err(credentials_failed)?;
    }
    match state.store.create_mcp_server(tenant, &record).await {
        Ok(()) => state.mcp.forget_registrations(tenant),
        // Lost a race with another create of the same name: its values may
        // be the ones just written over, so they are left, not deleted.
        Err(StoreError::Exists) => return Err(duplicate(&name)),
        Err(e) => {
            if !values.is_empty()
                && let Err(ce) = state.mcp.credentials.delete(tenant, &name).await
            {
                tracing::warn!(error = %ce, server = %name, "mcp credentials left after a failed create");
            }
            return Err(e.into());
        }
    }
    tracing::info!(server = %name, "mcp server registered");
    Ok((StatusCode::CREATED, Json(ServerView::from(record))).into_response())
}

/// `GET /v1/admin/mcp-servers`: config-declared and registered, by name.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut log = RequestLog::default();
    let r = async {
        let p = super::caller(&state, &headers, SCOPE_ADMIN, &mut log).await?;
        let mut data: Vec<ServerView> = declared(&state, &p.tenant)
            .into_iter()
            .flatten()
            .map(|(n, s)| declared_view(n, s))
            .collect();
        let stored = state.store.list_mcp_servers(&p.tenant).await?;
        data.extend(stored.into_iter().map(ServerView::from));
        data.sort_by(|a, b| (&a.name, a.source).cmp(&(&b.name, b.source)));
        Ok(Json(serde_json::json!({"object": "list", "data": data})).into_response())
    }
    .await;
    super::logged(r, log)
}

/// `GET /v1/admin/mcp-servers/{name}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathName(name): PathName,
) -> Response {
    let mut log = RequestLog::default();
    let r = async {
        let p = super::caller(&state, &headers, SCOPE_ADMIN, &mut log).await?;
        if let Some(s) = declared(&state, &p.tenant).and_then(|d| d.get(&name)) {
            return Ok(Json(declared_view(&name, s)).into_response());
        }
        if !registry::is_server_name(&name) {
            return Err(missing(&name));
        }
        let rec = state
            .store
            .get_mcp_server(&p.tenant, &name)
            .await?
            .ok_or_else(|| missing(&name))?;
        Ok(Json(ServerView::from(rec)).into_response())
    }
    .await;
    super::logged(r, log)
}

/// `PATCH /v1/admin/mcp-servers/{name}`: any of `url`, `headers` (replaced
/// as a whole), `allowed_tools` (`null`: every tool), `timeout_seconds`.
pub async fn update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathName(name): PathName,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let r = update_inner(&state, &headers, name, body, &mut log).await;
    super::logged(r, log)
}

async fn update_inner(
    state: &AppState,
    headers: &HeaderMap,
    name: String,
    body: Body,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let p = super::caller(state, headers, SCOPE_ADMIN, log).await?;
    let tenant = p.tenant.as_str();
    if declared(state, tenant).is_some_and(|d| d.contains_key(&name)) {
        return Err(read_only(&name));
    }
    let f = body_fields(
        headers,
        body,
        &["url", "headers", "allowed_tools", "timeout_seconds"],
    )
    .await?;
    check(state, &f)?;
    if !registry::is_server_name(&name) {
        return Err(missing(&name));
    }
    let old = state
        .store
        .get_mcp_server(tenant, &name)
        .await?
        .ok_or_else(|| missing(&name))?;
    let mut rec = old.clone();
    if let Some(u) = f.url {
        rec.url = u;
    }
    if let Some(h) = &f.headers {
        rec.headers = h.keys().cloned().collect();
    }
    if let Some(t) = f.allowed_tools {
        rec.allowed_tools = t;
    }
    if let Some(t) = f.timeout_seconds {
        rec.timeout_seconds = t;
    }
    rec.updated = now_secs().max(old.updated);
    rec.version = old.version + 1;
    // New values before the record names them; the old ones are put back
    // if the record cannot be written.
    let previous = match &f.headers {
        Some(values) => {
            let creds = &state.mcp.credentials;
            let previous = creds.get(tenant, &name).await.map_err(credentials_failed)?;
            creds
                .put(tenant, &name, values)
                .await
                .map_err(credentials_failed)?;
            Some(previous)
        }
        None => None,
    };
    let written = state
        .store
        .update_mcp_server(tenant, &rec, old.version)
        .await;
    // Whatever the outcome, this process reads the registrations anew.
    state.mcp.forget_registrations(tenant);
    let failure = match written {
        Ok(true) => None,
        Ok(false) => Some(missing(&name)),
        Err(StoreError::Conflict) => Some(
            ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "concurrent_update",
                format!("the MCP server '{name}' was changed concurrently; retry the request"),
            )
            .with_param("name"),
        ),
        Err(e) => Some(e.into()),
    };
    if let Some(err) = failure {
        if let Some(previous) = previous
            && let Err(ce) = state.mcp.credentials.put(tenant, &name, &previous).await
        {
            tracing::warn!(error = %ce, server = %name, "mcp credentials not restored after a failed update");
        }
        return Err(err);
    }
    // This process's cached list and kept connection go (other processes
    // see another URL or credential and open anew).
    state.mcp.clients.forget_server(tenant, &name);
    tracing::info!(server = %name, "mcp server changed");
    Ok(Json(ServerView::from(rec)).into_response())
}

/// `DELETE /v1/admin/mcp-servers/{name}`: the record, then its values.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathName(name): PathName,
) -> Response {
    let mut log = RequestLog::default();
    let r = async {
        let p = super::caller(&state, &headers, SCOPE_ADMIN, &mut log).await?;
        let tenant = p.tenant.as_str();
        if declared(&state, tenant).is_some_and(|d| d.contains_key(&name)) {
            return Err(read_only(&name));
        }
        if !registry::is_server_name(&name) {
            return Err(missing(&name));
        }
        let deleted = state.store.delete_mcp_server(tenant, &name).await;
        // Whatever the outcome, this process reads the registrations anew.
        state.mcp.forget_registrations(tenant);
        if !deleted? {
            return Err(missing(&name));
        }
        // The record is gone, so nothing uses the values any more; a failure
        // here leaves an unused secret, which the next create of the name replaces.
        if let Err(e) = state.mcp.credentials.delete(tenant, &name).await {
            tracing::warn!(error = %e, server = %name, "mcp credentials left after a delete");
        }
        state.mcp.clients.forget_server(tenant, &name);
        tracing::info!(server = %name, "mcp server removed");
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    super::logged(r, log)
}
