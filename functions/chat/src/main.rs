//! Lambda function serving the chat routes, with response streaming so that
//! `stream: true` answers arrive as they are generated. State is built once
//! per cold start.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ctxgate::telemetry::init();
    let state = ctxgate::AppState::from_env().await?;
    ctxgate::http::run_lambda_streaming(ctxgate::http::chat_routes(state)).await
}
