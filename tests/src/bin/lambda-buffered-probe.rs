//! Test fixture, not shipped: the chat routes under the library's buffered
//! Lambda wiring (`ctxgate::http::run_lambda`, what every function but chat
//! runs), so a test can drive buffered invocations that wait on an upstream.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ctxgate::telemetry::init();
    let state = ctxgate::AppState::from_env().await?;
    ctxgate::http::run_lambda(ctxgate::http::chat_routes(state)).await
}
