//! Issue 12, point 15: `limits.max_prompt_tokens` bounds the prompt sent
//! upstream, the stored history included, before the provider is called.

use ctxgate_tests::{Gateway, MockUpstream, dynamo_store, embedded_store};

async fn the_prompt_limit_counts_the_stored_history(
    store: std::sync::Arc<dyn ctxgate::store::Store>,
) {
    let upstream = MockUpstream::openai().await;
    let base = format!("{}/v1", upstream.url);
    let gw = Gateway::with_toml(
        store.clone(),
        "[limits]\nmax_prompt_tokens = 300\n",
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-test")],
    );
    let key = gw.key("acme", &[]).await;
    // About 100 tokens each: one fits, three do not.
    let text = "word ".repeat(80);

    // A prompt over the limit on its own, stateless: refused, never sent.
    let (status, _, body) = gw.chat(&key, "openai/gpt-4o", None, &text.repeat(4)).await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["param"].as_str()
        ),
        (413, Some("prompt_too_large"), Some("messages")),
        "{body}"
    );
    assert!(upstream.received().is_empty());

    // Stored turns that each fit, until the history pushes the prompt over.
    let mut refused_at = None;
    for turn in 1..=10 {
        let before = gw
            .state
            .store
            .conversation_meta("acme", "long")
            .await
            .unwrap();
        let sent = upstream.received().len();
        let (status, _, body) = gw.chat(&key, "openai/gpt-4o", Some("long"), &text).await;
        if status == 200 {
            continue;
        }
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (413, Some("prompt_too_large")),
            "{body}"
        );
        assert_eq!(upstream.received().len(), sent, "nothing went upstream");
        let after = gw
            .state
            .store
            .conversation_meta("acme", "long")
            .await
            .unwrap();
        assert_eq!(before, after, "the stored conversation is unchanged");
        refused_at = Some(turn);
        break;
    }
    let refused_at = refused_at.expect("the history must reach the limit");
    assert!(
        refused_at >= 2,
        "the first turn fits; only the history makes the prompt too large"
    );
    // The same message still fits without the history.
    let (status, _, body) = gw.chat(&key, "openai/gpt-4o", None, &text).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_prompt_limit_counts_the_stored_history_embedded() {
    let (store, _dir) = embedded_store();
    the_prompt_limit_counts_the_stored_history(store).await;
}

#[tokio::test]
async fn the_prompt_limit_counts_the_stored_history_dynamodb() {
    the_prompt_limit_counts_the_stored_history(dynamo_store().await).await;
}
