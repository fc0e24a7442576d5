//! Lambda function on the table's stream: purges expired conversations' messages.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ctxgate::telemetry::init();
    let state = ctxgate::AppState::from_env().await?;
    ctxgate::sweep::run_lambda(state).await
}
