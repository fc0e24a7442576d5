use super::*;

fn config(metrics: &str) -> Config {
    Config::from_toml(
        r#"
        [[models]]
        id = "openai/gpt-4o-mini"
        "#,
        |k| (k == "CTXGATE_METRICS").then(|| metrics.to_owned()),
    )
    .unwrap()
}

fn usage(input: u64, output: u64, cache_read: u64) -> Usage {
    Usage {
        input,
        output,
        cache_read,
        ..Usage::default()
    }
}

#[test]
fn classes_follow_status_and_code() {
    assert_eq!(Class::of(200, None), None);
    assert_eq!(Class::of(400, Some("invalid_value")), Some(Class::Client));
    assert_eq!(Class::of(404, None), Some(Class::Client));
    assert_eq!(Class::of(429, Some("rate_limited")), Some(Class::Limited));
    assert_eq!(
        Class::of(429, Some("upstream_rate_limited")),
        Some(Class::Limited)
    );
    assert_eq!(
        Class::of(502, Some("upstream_unavailable")),
        Some(Class::Upstream)
    );
    assert_eq!(
        Class::of(504, Some("deadline_exceeded")),
        Some(Class::Upstream)
    );
    assert_eq!(
        Class::of(503, Some("upstream_stream_error")),
        Some(Class::Upstream)
    );
    assert_eq!(
        Class::of(503, Some("store_unavailable")),
        Some(Class::Internal)
    );
    assert_eq!(
        Class::of(500, Some("internal_error")),
        Some(Class::Internal)
    );
}

#[test]
fn doors_are_a_fixed_set() {
    assert_eq!(door_of("/v1/chat/completions"), "chat");
    assert_eq!(door_of("/v1/messages/count_tokens"), "messages");
    assert_eq!(door_of("/v1/responses/resp_123/input_items"), "responses");
    assert_eq!(door_of("/v1/conversations/conv_1/items"), "conversations");
    assert_eq!(door_of("/v1/admin/keys/key_1"), "admin");
    assert_eq!(door_of("/mcp"), "mcp");
    // A client's path never becomes a value.
    assert_eq!(door_of("/v1/tenant-acme-secret"), "other");
}

/// Runs `f` as a request's work under a fresh tally, then finishes it.
async fn request(m: &Arc<Metrics>, status: u16, f: impl Future<Output = ()>) {
    let t = m.begin("chat", "chat").unwrap();
    scope(Some(t.clone()), f).await;
    t.finish(status, None);
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn a_turn_adds_up_and_unknown_models_are_other() {
    let m = Arc::new(Metrics::new(&config("prometheus")));
    request(&m, 200, async {
        retry();
        fallback();
        answered(
            "openai",
            "openai/gpt-4o-mini",
            &usage(10, 5, 4),
            7,
            Duration::from_millis(30),
        );
        answered(
            "openai",
            "openai/gpt-4o-mini",
            &usage(20, 1, 0),
            3,
            Duration::from_millis(20),
        );
        tool_call(true);
        tool_call(false);
        first_token();
    })
    .await;
    request(&m, 200, async {
        answered(
            "openai",
            "openai/made-up-by-a-client",
            &usage(1, 1, 0),
            0,
            Duration::ZERO,
        );
    })
    .await;
    request(&m, 200, async {
        failed(429, "upstream_rate_limited");
    })
    .await;
    // Outside a request the hooks do nothing.
    retry();
    let text = m.exposition().unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .to_owned()
    };
    assert!(line("ctxgate_tokens_total{function=\"chat\",door=\"chat\",provider=\"openai\",model=\"openai/gpt-4o-mini\",kind=\"input\"}").ends_with(" 30"));
    assert!(line("ctxgate_tokens_total{function=\"chat\",door=\"chat\",provider=\"openai\",model=\"openai/gpt-4o-mini\",kind=\"cached\"}").ends_with(" 4"));
    assert!(line("ctxgate_cost_micro_usd_total{function=\"chat\",door=\"chat\",provider=\"openai\",model=\"openai/gpt-4o-mini\"}").ends_with(" 10"));
    assert!(line("ctxgate_retries_total{").ends_with(" 1"));
    assert!(line("ctxgate_fallbacks_total{").ends_with(" 1"));
    assert!(line("ctxgate_tool_calls_total{").ends_with(" 2"));
    assert!(line("ctxgate_tool_errors_total{").ends_with(" 1"));
    assert!(line("ctxgate_cold_starts_total{function=\"chat\"}").ends_with(" 1"));
    assert!(line("ctxgate_requests_total{function=\"chat\",door=\"chat\",provider=\"openai\",model=\"other\"}").ends_with(" 1"));
    assert!(line("ctxgate_errors_total{function=\"chat\",door=\"chat\",provider=\"\",model=\"\",class=\"limited\"}").ends_with(" 1"));
    assert!(line("ctxgate_time_to_first_token_seconds_count{").ends_with(" 1"));
    assert!(!text.contains("made-up-by-a-client"));
}

#[tokio::test]
async fn an_emf_record_has_its_directive_and_values() {
    let m = Arc::new(Metrics::new(&config("emf")));
    let t = m.begin("chat", "messages").unwrap();
    scope(Some(t.clone()), async {
        answered(
            "openai",
            "openai/gpt-4o-mini",
            &usage(12, 3, 0),
            9,
            Duration::from_millis(5),
        );
    })
    .await;
    let named = |slot: &AtomicU16, names: &Names| names.get(slot.load(Relaxed)).cloned();
    let (provider, model) = (named(&t.provider, &m.providers), named(&t.model, &m.models));
    let record = Record {
        timestamp_ms: 1,
        function: t.function,
        door: t.door,
        provider: provider.as_ref(),
        model: model.as_ref(),
        class: None,
        latency: Duration::from_millis(8),
        upstream: Some(Duration::from_micros(t.upstream_us.load(Relaxed))),
        first_token: None,
        input_tokens: t.input.load(Relaxed),
        output_tokens: t.output.load(Relaxed),
        cached_tokens: 0,
        cost_micro_usd: t.cost.load(Relaxed),
        retries: 0,
        fallbacks: 0,
        tool_calls: 0,
        tool_errors: 0,
        cold_start: true,
    };
    let doc = emf::render(&record);
    let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
    let sets: Vec<&serde_json::Value> = directives.iter().map(|d| &d["Dimensions"]).collect();
    assert_eq!(
        sets,
        [
            &serde_json::json!([["function"]]),
            &serde_json::json!([["function", "door"]]),
            &serde_json::json!([["function", "door", "provider", "model"]]),
        ]
    );
    for d in directives {
        assert_eq!(d["Namespace"], "ctxgate");
        for m in d["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} is declared but not a number");
        }
    }
    // The per-model set carries a turn's tokens and cost, not its latency.
    let by_model: Vec<&str> = directives[2]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        by_model,
        [
            "Requests",
            "InputTokens",
            "OutputTokens",
            "CachedTokens",
            "CostMicroUSD"
        ]
    );
    // Zero counts of what did not happen are left out (each is a billed metric).
    assert!(doc.get("Retries").is_none() && doc.get("ToolCalls").is_none());
    assert_eq!(doc["InputTokens"], 12);
    assert_eq!(doc["CostMicroUSD"], 9);
    assert_eq!(doc["ErrorsClient"], 0);
    assert_eq!(doc["Latency"], 8.0);
    assert_eq!(doc["model"], "openai/gpt-4o-mini");
    assert!(doc.get("TimeToFirstToken").is_none());
}

#[test]
fn off_records_nothing() {
    let m = Arc::new(Metrics::new(&config("off")));
    assert!(m.begin("chat", "chat").is_none());
    assert!(m.exposition().is_none());
}
