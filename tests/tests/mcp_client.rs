//! The MCP client against real MCP servers on loopback (rmcp's server side):
//! listing, names, the cache, every call outcome, the legacy fallback,
//! cancellation, and the addresses that must never be reached.

use std::time::Duration;

use ctxgate::mcp::{Outcome, ServerSpec};
use ctxgate::model::{MediaSource, Tool, ToolResultPart};
use ctxgate_tests::mcp_server::{self, McpFixture, Options, PNG, Revision, mcp, tool_call};

fn names(tools: &[Tool]) -> Vec<String> {
    tools.iter().map(|t| t.name().unwrap().to_owned()).collect()
}

fn text(run: &ctxgate::mcp::ToolRun) -> String {
    run.result.text()
}

const ALL: [&str; 8] = [
    "crm__get_customer",
    "crm__find_orders",
    "crm__photo",
    "crm__big",
    "crm__broken",
    "crm__hang",
    "crm__echo",
    "crm__garbled",
];

#[tokio::test]
async fn every_page_is_listed_and_named_in_order() {
    for revision in [Revision::Current, Revision::Legacy] {
        let server = McpFixture::start(revision).await;
        let (mcp, _dir) = mcp(|_| {});
        let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
        assert!(tb.unavailable().is_empty(), "{:?}", tb.unavailable());
        assert_eq!(names(tb.tools()), ALL, "{revision:?}");
        // Eight tools, two a page.
        assert_eq!(server.lists(), 4, "{revision:?}");
        let Tool::Function {
            description,
            parameters,
            strict,
            ..
        } = &tb.tools()[0]
        else {
            panic!("a function tool")
        };
        assert_eq!(description.as_deref(), Some("A customer by id"));
        assert_eq!(parameters.as_ref().unwrap()["required"][0], "id");
        assert_eq!(*strict, None);
        assert!(tb.owns("crm__get_customer"));
        assert!(!tb.owns("get_customer"));
        assert_eq!(tb.route("crm__get_customer"), Some(("crm", "get_customer")));
        assert_eq!(tb.server_of("crm__echo"), Some("crm"));
    }
}

#[tokio::test]
async fn servers_keep_the_request_order_and_allowed_tools_filter() {
    let a = McpFixture::start(Revision::Current).await;
    let b = McpFixture::start(Revision::Legacy).await;
    let (mcp, _dir) = mcp(|_| {});
    let mut kb = b.spec("kb");
    kb.allowed_tools = Some(vec!["get_*".to_owned(), "echo".to_owned()]);
    let mut crm = a.spec("crm");
    crm.allowed_tools = Some(vec!["photo".to_owned()]);
    let tb = mcp.toolbox("acme", vec![kb, crm]).await;
    assert_eq!(
        names(tb.tools()),
        ["kb__get_customer", "kb__echo", "crm__photo"]
    );
}

#[tokio::test]
async fn lists_are_cached_per_tenant_and_credential_until_a_call_fails() {
    let server = McpFixture::start(Revision::Current).await;
    let (mcp, _dir) = mcp(|_| {});
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    assert_eq!(server.lists(), 4);
    drop(tb);
    let requests = server.seen().len();

    // From the cache: no request at all (not even a connection's discover).
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    assert_eq!(names(tb.tools()), ALL);
    assert_eq!(server.seen().len(), requests);
    drop(tb);

    // Another tenant, or another credential, lists for itself.
    let tb = mcp.toolbox("globex", vec![server.spec("crm")]).await;
    assert_eq!(tb.tools().len(), 8);
    assert_eq!(server.lists(), 8);
    let mut other = server.spec("crm");
    other.headers.push(("X-Tenant".to_owned(), "2".to_owned()));
    mcp.toolbox("acme", vec![other]).await;
    assert_eq!(server.lists(), 12);

    // A failed call drops acme's list: its next turn lists again.
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    assert_eq!(server.lists(), 12);
    let mut short = server.spec("crm");
    short.timeout = Duration::from_millis(200);
    drop(tb);
    let tb = mcp.toolbox("acme", vec![short]).await;
    let run = tb.call(&tool_call("1", "crm__hang", "{}")).await;
    assert_eq!(run.outcome, Outcome::TimedOut);
    drop(tb);
    mcp.toolbox("acme", vec![server.spec("crm")]).await;
    assert_eq!(server.lists(), 16);
}

#[tokio::test]
async fn a_server_ttl_or_the_configured_time_bounds_the_cache() {
    // No positive ttlMs (rmcp servers send 0 when they set none): the
    // configured time; 0 keeps nothing.
    let server = McpFixture::start(Revision::Current).await;
    let (mcp, _dir) = mcp(|c| c.mcp.tools_ttl_seconds = 0);
    mcp.toolbox("acme", vec![server.spec("crm")]).await;
    mcp.toolbox("acme", vec![server.spec("crm")]).await;
    assert_eq!(server.lists(), 8);
    assert_eq!(mcp.clients.cached_lists(), 0);

    // A server's ttlMs wins over the configured time.
    let server = McpFixture::start_with(
        Revision::Current,
        Options {
            ttl_ms: Some(60_000),
            ..Options::default()
        },
    )
    .await;
    mcp.toolbox("acme", vec![server.spec("crm")]).await;
    mcp.toolbox("acme", vec![server.spec("crm")]).await;
    assert_eq!(server.lists(), 4);
    assert_eq!(mcp.clients.cached_lists(), 1);
}

#[tokio::test]
async fn a_turn_from_the_cache_that_calls_nothing_opens_no_connection() {
    let server = McpFixture::start(Revision::Current).await;
    let (mcp, _dir) = mcp(|_| {});
    mcp.toolbox("acme", vec![server.spec("crm")]).await;
    let before = server.seen().len();
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    drop(tb);
    assert_eq!(server.seen().len(), before);
    // A call from a cached list opens the connection then.
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    let run = tb
        .call(&tool_call("1", "crm__get_customer", r#"{"id":"c-1"}"#))
        .await;
    assert_eq!(run.outcome, Outcome::Ok);
    assert!(server.seen().len() > before);
}

#[tokio::test]
async fn each_outcome_of_a_call() {
    for revision in [Revision::Current, Revision::Legacy] {
        let server = McpFixture::start(revision).await;
        let (mcp, _dir) = mcp(|c| c.mcp.max_result_bytes = 1000);
        let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;

        let run = tb
            .call(&tool_call("c1", "crm__get_customer", r#"{"id":"c-42"}"#))
            .await;
        assert_eq!(run.outcome, Outcome::Ok, "{revision:?} {}", text(&run));
        assert_eq!(
            (run.server.as_str(), run.tool.as_str()),
            ("crm", "get_customer")
        );
        assert_eq!(run.result.call_id, "c1");
        assert!(!run.result.is_error);
        assert_eq!(text(&run), "customer c-42: Ada Lovelace, ada@example.com");

        // Structured content only: its JSON.
        let run = tb.call(&tool_call("c2", "crm__find_orders", "")).await;
        assert_eq!(run.outcome, Outcome::Ok);
        let v: serde_json::Value = serde_json::from_str(&text(&run)).unwrap();
        assert_eq!(v["orders"][0]["total"], 12.5);

        let run = tb.call(&tool_call("c3", "crm__photo", "{}")).await;
        assert!(matches!(
            &run.result.content[..],
            [ToolResultPart::Image(img)] if img.source == MediaSource::Base64 {
                media_type: "image/png".into(), data: PNG.into()
            }
        ));

        let run = tb
            .call(&tool_call("c4", "crm__big", r#"{"size": 5000}"#))
            .await;
        assert_eq!(run.outcome, Outcome::Ok);
        assert_eq!(
            text(&run),
            format!(
                "{}\n[ctxgate: result truncated, 1000 of 5000 bytes shown]",
                "x".repeat(1000)
            )
        );

        let run = tb.call(&tool_call("c5", "crm__broken", "{}")).await;
        assert_eq!(run.outcome, Outcome::ToolError);
        assert!(run.result.is_error);
        assert_eq!(text(&run), "the CRM database is offline");

        let run = tb.call(&tool_call("c6", "crm__nope", "{}")).await;
        assert_eq!(run.outcome, Outcome::UnknownTool);
        assert!(run.result.is_error);
        assert!(text(&run).contains("crm__nope"), "{}", text(&run));
        assert_eq!(run.server, "");

        for bad in ["[1,2]", "{\"id\":", "\"c-1\""] {
            let run = tb.call(&tool_call("c7", "crm__get_customer", bad)).await;
            assert_eq!(run.outcome, Outcome::InvalidArguments, "{bad}");
            assert!(run.result.is_error);
            assert!(text(&run).contains("not a JSON object"), "{}", text(&run));
        }

        let run = tb.call(&tool_call("c8", "crm__garbled", "{}")).await;
        assert_eq!(run.outcome, Outcome::Malformed, "{}", text(&run));
        assert!(run.result.is_error);
        assert!(!text(&run).contains("oops"), "{}", text(&run));

        // The server never saw the bad calls.
        assert_eq!(
            server.calls(),
            [
                "get_customer",
                "find_orders",
                "photo",
                "big",
                "broken",
                "garbled"
            ]
        );
    }
}

#[tokio::test]
async fn a_call_past_its_timeout_times_out() {
    let server = McpFixture::start(Revision::Current).await;
    let (mcp, _dir) = mcp(|_| {});
    // Listed within the usual limit (kept), so only the call meets the short one.
    mcp.toolbox("acme", vec![server.spec("crm")]).await;
    let mut spec = server.spec("crm");
    spec.timeout = Duration::from_millis(300);
    let tb = mcp.toolbox("acme", vec![spec]).await;
    let run = tb.call(&tool_call("1", "crm__hang", "{}")).await;
    assert_eq!(run.outcome, Outcome::TimedOut);
    assert!(run.result.is_error);
    assert!(
        text(&run).contains("timed out after 0.3 s"),
        "{}",
        text(&run)
    );
    // The abandoned call is cancelled on the server.
    server.cancelled().await;
}

#[tokio::test]
async fn the_legacy_server_gets_one_initialize_and_its_session_for_the_whole_turn() {
    let server = McpFixture::start(Revision::Legacy).await;
    let (mcp, _dir) = mcp(|_| {});
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    for i in 0..3 {
        let run = tb
            .call(&tool_call(&i.to_string(), "crm__echo", r#"{"n":1}"#))
            .await;
        assert_eq!(run.outcome, Outcome::Ok);
    }
    let seen = server.seen();
    assert_eq!(server.initializes(), 1, "{:?}", server.methods());
    let posts: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "tools/list" || s.method == "tools/call")
        .collect();
    assert_eq!(posts.len(), 7);
    let session = posts[0].session.clone().expect("a session id");
    assert!(posts.iter().all(|s| s.session.as_ref() == Some(&session)));
    drop(tb);

    // The next turn (lists from the cache) handshakes again when it calls.
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    tb.call(&tool_call("x", "crm__echo", "{}")).await;
    assert_eq!(server.initializes(), 2);
}

#[tokio::test]
async fn the_current_server_gets_no_initialize_and_no_session() {
    let server = McpFixture::start(Revision::Current).await;
    let (mcp, _dir) = mcp(|_| {});
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    tb.call(&tool_call("1", "crm__echo", "{}")).await;
    let methods = server.methods();
    assert_eq!(server.initializes(), 0, "{methods:?}");
    assert!(
        methods.contains(&"server/discover".to_owned()),
        "{methods:?}"
    );
    assert!(server.seen().iter().all(|s| s.session.is_none()));
}

#[tokio::test]
async fn only_the_registered_headers_reach_the_server() {
    let server = McpFixture::start(Revision::Current).await;
    let (mcp, _dir) = mcp(|_| {});
    let mut spec = server.spec("crm");
    spec.headers
        .push(("X-Api-Key".to_owned(), "k-123".to_owned()));
    let tb = mcp.toolbox("acme", vec![spec]).await;
    tb.call(&tool_call("1", "crm__echo", "{}")).await;
    let seen = server.headers_seen();
    assert!(!seen.is_empty());
    for h in seen {
        assert_eq!(h["authorization"], mcp_server::GOOD_TOKEN);
        assert_eq!(h["x-api-key"], "k-123");
        assert_eq!(h.get_all("authorization").iter().count(), 1);
        assert!(h.get("cookie").is_none() && h.get("x-forwarded-for").is_none());
    }
}

#[tokio::test]
async fn calls_run_concurrently_on_one_connection() {
    for revision in [Revision::Current, Revision::Legacy] {
        let server = McpFixture::start(revision).await;
        let (mcp, _dir) = mcp(|_| {});
        let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
        let calls: Vec<_> = (0..8)
            .map(|i| {
                tool_call(
                    &i.to_string(),
                    "crm__get_customer",
                    &format!(r#"{{"id":"{i}"}}"#),
                )
            })
            .collect();
        let runs = futures_util::future::join_all(calls.iter().map(|c| tb.call(c))).await;
        for (i, run) in runs.iter().enumerate() {
            assert_eq!(run.outcome, Outcome::Ok);
            assert!(text(run).starts_with(&format!("customer {i}:")));
        }
        assert_eq!(server.calls().len(), 8);
        if revision == Revision::Legacy {
            assert_eq!(server.initializes(), 1);
        }
    }
}

#[tokio::test]
async fn a_wrong_credential_is_a_401_the_turn_reports() {
    for revision in [Revision::Current, Revision::Legacy] {
        let server = McpFixture::start(revision).await;
        let (mcp, _dir) = mcp(|_| {});
        let mut spec = server.spec("crm");
        spec.headers = vec![("Authorization".to_owned(), "Bearer wrong-token".to_owned())];
        let tb = mcp.toolbox("acme", vec![spec]).await;
        assert!(tb.tools().is_empty());
        assert_eq!(tb.unavailable().len(), 1);
        let (name, reason) = &tb.unavailable()[0];
        assert_eq!(name, "crm");
        assert!(reason.contains("HTTP 401"), "{revision:?}: {reason}");
        assert!(!reason.contains("wrong-token"));
        assert_eq!(mcp.clients.cached_lists(), 0);
    }
}

#[tokio::test]
async fn a_credential_revoked_during_the_turn_fails_the_call_with_its_401() {
    for revision in [Revision::Current, Revision::Legacy] {
        let server = McpFixture::start(revision).await;
        let (mcp, _dir) = mcp(|_| {});
        let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
        assert_eq!(mcp.clients.cached_lists(), 1);
        server.revoke();
        let run = tb.call(&tool_call("1", "crm__echo", "{}")).await;
        assert_eq!(run.outcome, Outcome::Failed, "{revision:?}");
        assert_eq!(
            text(&run),
            "calling echo on crm failed: HTTP 401 from the server (check its credentials)"
        );
        assert_eq!(mcp.clients.cached_lists(), 0);
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_left_out_and_the_others_listed() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let up = McpFixture::start(Revision::Current).await;
    let (mcp, _dir) = mcp(|_| {});
    let down = ServerSpec {
        url: format!("http://{closed}/mcp").parse().unwrap(),
        ..up.spec("down")
    };
    let tb = mcp.toolbox("acme", vec![down, up.spec("crm")]).await;
    assert_eq!(tb.tools().len(), 8);
    assert_eq!(
        tb.unavailable(),
        [("down".to_owned(), "connection refused".to_owned())]
    );
}

#[tokio::test]
async fn a_list_that_never_comes_or_cannot_be_read_leaves_the_server_out() {
    for revision in [Revision::Current, Revision::Legacy] {
        let slow = McpFixture::start_with(
            revision,
            Options {
                list_hangs: true,
                ..Options::default()
            },
        )
        .await;
        let garbled = McpFixture::start_with(
            revision,
            Options {
                list_garbled: true,
                ..Options::default()
            },
        )
        .await;
        let (mcp, _dir) = mcp(|_| {});
        let mut slow_spec = slow.spec("slow");
        slow_spec.timeout = Duration::from_millis(300);
        let tb = mcp
            .toolbox("acme", vec![slow_spec, garbled.spec("garbled")])
            .await;
        assert!(tb.tools().is_empty());
        assert_eq!(
            tb.unavailable(),
            [
                ("slow".to_owned(), "timed out after 0.3 s".to_owned()),
                (
                    "garbled".to_owned(),
                    "the server's answer is not a readable MCP message".to_owned()
                ),
            ],
            "{revision:?}"
        );
        assert_eq!(mcp.clients.cached_lists(), 0);
    }
}

#[tokio::test]
async fn a_server_that_stops_after_listing_fails_the_call() {
    let mut server = McpFixture::start(Revision::Current).await;
    let (mcp, _dir) = mcp(|_| {});
    mcp.toolbox("acme", vec![server.spec("crm")]).await;
    server.stop().await;
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    let run = tb.call(&tool_call("1", "crm__echo", "{}")).await;
    assert_eq!(run.outcome, Outcome::Failed, "{}", text(&run));
    assert!(run.result.is_error);
    // The list was dropped with the failure.
    assert_eq!(mcp.clients.cached_lists(), 0);
}

#[tokio::test]
async fn the_metadata_address_is_refused_without_a_connection() {
    let (mcp, _dir) = mcp(|c| c.mcp.allowed_hosts.push("169.254.169.254".to_owned()));
    let spec = ServerSpec {
        name: "meta".to_owned(),
        url: "http://169.254.169.254/mcp".parse().unwrap(),
        headers: vec![("Authorization".to_owned(), "Bearer secret-value".to_owned())],
        allowed_tools: None,
        timeout: Duration::from_secs(10),
    };
    let tb = mcp.toolbox("acme", vec![spec.clone()]).await;
    assert_eq!(tb.unavailable().len(), 1);
    let reason = &tb.unavailable()[0].1;
    assert!(
        reason.contains("169.254.169.254") && reason.contains("metadata"),
        "{reason}"
    );
    assert!(!reason.contains("secret-value"));

    // Plain http to a host not on the list is refused too.
    let spec = ServerSpec {
        url: "http://example.invalid/mcp".parse().unwrap(),
        ..spec
    };
    let tb = mcp.toolbox("acme", vec![spec]).await;
    assert!(
        tb.unavailable()[0].1.contains("https"),
        "{:?}",
        tb.unavailable()
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let server = McpFixture::start(Revision::Current).await;
    let target = server.url().to_string();
    let router = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (http::StatusCode::TEMPORARY_REDIRECT, [("location", target)]) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (mcp, _dir) = mcp(|_| {});
    let spec = ServerSpec {
        url: format!("http://{addr}/mcp").parse().unwrap(),
        ..server.spec("hop")
    };
    let tb = mcp.toolbox("acme", vec![spec]).await;
    assert_eq!(
        tb.unavailable(),
        [(
            "hop".to_owned(),
            "the server answered with a redirect (not followed)".to_owned()
        )]
    );
    assert!(
        server.seen().is_empty(),
        "the credential went on to the target"
    );
}

#[tokio::test]
async fn dropping_the_toolbox_cancels_a_hanging_call() {
    dropping_the_toolbox_cancels(Revision::Current).await;
}

#[tokio::test]
async fn dropping_the_toolbox_cancels_a_hanging_call_on_a_legacy_server() {
    dropping_the_toolbox_cancels(Revision::Legacy).await;
}

async fn dropping_the_toolbox_cancels(revision: Revision) {
    let server = McpFixture::start(revision).await;
    let (mcp, _dir) = mcp(|_| {});
    let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
    let call = tool_call("1", "crm__hang", "{}");
    // The turn goes away while the call runs: its future and then the
    // toolbox are dropped.
    tokio::select! {
        _ = tb.call(&call) => panic!("hang answered"),
        _ = server.hang_started() => {}
    }
    drop(tb);
    server.cancelled().await;
    assert_eq!(server.cancels(), 1);
}

/// Gateway time around the server's own, per call on loopback (printed with
/// `--nocapture`; never asserted).
#[tokio::test]
async fn overhead_per_call_on_loopback() {
    for revision in [Revision::Current, Revision::Legacy] {
        let server = McpFixture::start(revision).await;
        let (mcp, _dir) = mcp(|_| {});
        let tb = mcp.toolbox("acme", vec![server.spec("crm")]).await;
        let call = tool_call("1", "crm__get_customer", r#"{"id":"c-1"}"#);
        tb.call(&call).await; // warm the connection
        let skip = server.seen().len();
        let n = 200;
        let mut total = Duration::ZERO;
        for _ in 0..n {
            let run = tb.call(&call).await;
            assert_eq!(run.outcome, Outcome::Ok);
            total += run.duration;
        }
        let handled: Duration = server.seen()[skip..]
            .iter()
            .filter(|s| s.method == "tools/call")
            .map(|s| s.handling)
            .sum();
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "MCP call on loopback ({revision:?}) over {n} calls: {:.0} us per call, server {:.0} us, gateway {:.0} us",
            per(total),
            per(handled),
            per(total.saturating_sub(handled))
        );
    }
}
