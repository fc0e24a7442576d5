//! Issue 12, point 14: invalid UTF-8 answers as documented, dot segments
//! are not conversation ids, and the request id is the server's.

use ctxgate_tests::{Gateway, embedded_store};
use serde_json::json;

// Issue 12, point 14: a body that is not UTF-8 is a 400 (the media type was
// right, its content is not); a charset other than UTF-8 is a 415. The same
// on every route that takes a body; nothing is stored.
#[tokio::test]
async fn invalid_utf8_is_400_and_a_foreign_charset_is_415() {
    let (store, _dir) = embedded_store();
    let gw = Gateway::new(store.clone(), &[]);
    let key = gw
        .key(
            "acme",
            &["chat", "conversations:write", "conversations:read", "admin"],
        )
        .await;
    let bad = b"{\"model\": \"echo\", \"conversation_id\": \"u-1\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec();
    for (method, path) in [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/conversations"),
        ("PATCH", "/v1/conversations/u-1"),
        ("POST", "/v1/admin/keys"),
    ] {
        let (status, _, body) = gw
            .call_raw(method, path, Some(&key), &[], bad.clone())
            .await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("UTF-8"),
            "{body}"
        );
        let (status, _, body) = gw
            .call_raw(
                method,
                path,
                Some(&key),
                &[("content-type", "application/json; charset=latin-1")],
                br#"{"model": "echo", "messages": []}"#.to_vec(),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{method} {path}: {body}"
        );
    }
    let stored = store
        .load_conversation("acme", "u-1", ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(stored.meta.version, 0, "nothing was stored");
}

// Issue 12, point 14: `.` and `..` (and other all-dot ids) name no
// conversation, wherever an id is taken: body, header, path.
#[tokio::test]
async fn dot_segments_are_not_conversation_ids() {
    let (store, _dir) = embedded_store();
    let gw = Gateway::new(store, &[]);
    let key = gw
        .key(
            "acme",
            &["chat", "conversations:write", "conversations:read"],
        )
        .await;
    for id in [".", "..", "..."] {
        let turn = json!({"model": "echo", "conversation_id": id, "messages": [{"role": "user", "content": "hi"}]});
        let (status, _, body) = gw
            .call("POST", "/v1/chat/completions", Some(&key), Some(turn))
            .await;
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (400, Some("conversation_id")),
            "{id}: {body}"
        );
        let (status, _, body) = gw
            .call_raw(
                "POST",
                "/v1/chat/completions",
                Some(&key),
                &[("x-conversation-id", id)],
                json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (400, Some("x-conversation-id")),
            "{id}: {body}"
        );
        let (status, _, body) = gw
            .call(
                "POST",
                "/v1/conversations",
                Some(&key),
                Some(json!({"id": id})),
            )
            .await;
        assert_eq!(status, 400, "{id}: {body}");
    }
    // In the path, raw or percent-encoded.
    for path in [
        "/v1/conversations/..",
        "/v1/conversations/.",
        "/v1/conversations/%2E%2E",
        "/v1/conversations/%2e",
    ] {
        for method in ["GET", "DELETE"] {
            let (status, _, body) = gw.call(method, path, Some(&key), None).await;
            assert_eq!(
                (status, body["error"]["param"].as_str()),
                (400, Some("id")),
                "{method} {path}: {body}"
            );
        }
    }
}

// Issue 12, point 14: the server assigns `x-request-id`; a caller's own id
// comes back apart, in `x-client-request-id`, never as ours.
#[tokio::test]
async fn the_server_assigns_the_request_id() {
    let (store, _dir) = embedded_store();
    let gw = Gateway::new(store, &[]);
    let (_, headers, _) = gw
        .call_raw(
            "GET",
            "/health",
            None,
            &[("x-request-id", "mine-1")],
            vec![],
        )
        .await;
    let ours = headers["x-request-id"].to_str().unwrap();
    assert_ne!(ours, "mine-1");
    assert!(!ours.is_empty());
    assert_eq!(headers["x-client-request-id"], "mine-1");
    // Two requests with the same client id still get two ids.
    let (_, again, _) = gw
        .call_raw(
            "GET",
            "/health",
            None,
            &[("x-request-id", "mine-1")],
            vec![],
        )
        .await;
    assert_ne!(again["x-request-id"], headers["x-request-id"]);
    // A client id that is not a plain id is not echoed.
    let (_, odd, _) = gw
        .call_raw(
            "GET",
            "/health",
            None,
            &[("x-request-id", "a b\"<script>")],
            vec![],
        )
        .await;
    assert!(odd.get("x-client-request-id").is_none());
    assert!(odd.contains_key("x-request-id"));
    // Without one, only ours.
    let (_, plain, _) = gw.call("GET", "/health", None, None).await;
    assert!(plain.contains_key("x-request-id"));
    assert!(plain.get("x-client-request-id").is_none());
}
