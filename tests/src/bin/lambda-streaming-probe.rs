//! Test fixture, not shipped: the chat routes under lambda_http's streaming
//! runtime (`run_with_streaming_response`), so the local Runtime API's
//! streamed-response path is exercised by the real lambda_http encoder.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ctxgate::telemetry::init();
    let state = ctxgate::AppState::from_env().await?;
    let service = ctxgate::http::lambda_service(ctxgate::http::chat_routes(state));
    lambda_http::run_with_streaming_response(service).await
}
