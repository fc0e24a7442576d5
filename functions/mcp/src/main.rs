//! Lambda function serving the MCP endpoint (`POST /mcp`, buffered JSON
//! answers) and its Protected Resource Metadata. State is built once per
//! cold start.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ctxgate::telemetry::init();
    let state = ctxgate::AppState::from_env().await?;
    ctxgate::http::run_lambda(ctxgate::http::mcp_routes(state)).await
}
