//! Lambda function serving the conversations API. State is built once per cold start.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ctxgate::telemetry::init();
    let state = ctxgate::AppState::from_env().await?;
    ctxgate::http::run_lambda(ctxgate::http::conversations_routes(state)).await
}
