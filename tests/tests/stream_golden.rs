//! Golden files for stream translation: each recorded upstream stream under
//! `tests/fixtures/streams/*.sse` has the exact client stream the gateway
//! must send in the matching `.expected` file. Every recording is replayed
//! whole, split in two at every byte, and one byte at a time; the output must
//! be identical each time. `CTXGATE_BLESS=1` rewrites the expected files
//! (review the diff before committing).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ctxgate::ApiError;
use ctxgate::provider::{EventStream, ProviderError, sse};
use ctxgate::wire::openai_chat::chunk::{ChunkEncoder, ChunkMeta, DONE, error_event};
use futures_util::{StreamExt, stream};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/streams")
}

fn events(name: &str, pieces: Vec<Vec<u8>>) -> EventStream {
    let body = stream::iter(
        pieces
            .into_iter()
            .map(|p| Ok::<_, ProviderError>(Bytes::from(p))),
    );
    if name.starts_with("anthropic") {
        sse::events(
            "anthropic",
            body,
            ctxgate::provider::anthropic::stream::EventDecoder::new(),
        )
    } else {
        sse::events(
            "openai",
            body,
            ctxgate::provider::openai::stream::ChunkDecoder::new(),
        )
    }
}

/// A whole event stream as the client would receive it (no storage, no
/// keep-alives, no redaction): the provider's translator and the chunk encoder.
async fn render(mut events: EventStream, meta: ChunkMeta) -> Vec<u8> {
    let mut encoder = ChunkEncoder::new(meta);
    let mut body = encoder.start().to_vec();
    let mut out = Vec::new();
    while let Some(item) = events.next().await {
        match item {
            Ok(e) => encoder.push(&e, &mut out),
            Err(e) => {
                for b in out.drain(..) {
                    body.extend_from_slice(&b);
                }
                body.extend_from_slice(&error_event(&ApiError::from(e).body()));
                return body;
            }
        }
        for b in out.drain(..) {
            body.extend_from_slice(&b);
        }
    }
    encoder.end(&mut out);
    for b in out {
        body.extend_from_slice(&b);
    }
    body.extend_from_slice(DONE);
    body
}

async fn translate(name: &str, pieces: Vec<Vec<u8>>) -> String {
    // Fixed id and timestamp: the only values that would differ between runs.
    let meta = ChunkMeta {
        id: "chatcmpl-golden".into(),
        created: 1_700_000_000,
        model: format!("{}/model", name.split('_').next().unwrap()),
        include_usage: true,
    };
    String::from_utf8(render(events(name, pieces), meta).await).unwrap()
}

fn recordings() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "sse").then(|| {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
        })
        .collect();
    out.sort();
    assert!(out.len() >= 11, "recordings missing from {:?}", dir());
    out
}

#[tokio::test]
async fn every_recording_translates_to_its_golden_output_however_it_is_split() {
    let bless = std::env::var_os("CTXGATE_BLESS").is_some();
    for (name, bytes) in recordings() {
        let whole = translate(&name, vec![bytes.clone()]).await;
        let expected_path = dir().join(format!("{name}.expected"));
        if bless {
            std::fs::write(&expected_path, &whole).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{expected_path:?} missing (CTXGATE_BLESS=1 writes it)"));
        assert_eq!(whole, expected, "{name}: whole stream");
        for at in 0..=bytes.len() {
            let pieces = vec![bytes[..at].to_vec(), bytes[at..].to_vec()];
            assert_eq!(
                translate(&name, pieces).await,
                expected,
                "{name}: split at byte {at}"
            );
        }
        let bytewise = bytes.iter().map(|b| vec![*b]).collect();
        assert_eq!(
            translate(&name, bytewise).await,
            expected,
            "{name}: one byte at a time"
        );
    }
}

#[tokio::test]
async fn the_golden_outputs_say_what_the_issue_requires() {
    let read = |n: &str| std::fs::read_to_string(dir().join(format!("{n}.expected"))).unwrap();
    for n in ["openai_text", "anthropic_text"] {
        let out = read(n);
        assert!(
            out.starts_with(
                "data: {\"id\":\"chatcmpl-golden\",\"object\":\"chat.completion.chunk\""
            )
        );
        assert!(out.contains("\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"));
        assert!(out.contains("\"content\":\", Zoë"));
        assert!(out.contains("\"finish_reason\":\"stop\""));
        assert!(out.contains("\"choices\":[],\"usage\":{\"prompt_tokens\""));
        assert!(out.ends_with("data: [DONE]\n\n"));
    }
    for n in ["openai_parallel_tools", "anthropic_parallel_tools"] {
        let out = read(n);
        assert!(out.contains("\"tool_calls\":[{\"index\":1,\"id\":"), "{n}");
        assert!(out.contains("\"finish_reason\":\"tool_calls\""), "{n}");
    }
    for n in ["openai_length", "anthropic_max_tokens"] {
        assert!(read(n).contains("\"finish_reason\":\"length\""), "{n}");
    }
    for n in [
        "openai_error",
        "anthropic_error",
        "openai_cut",
        "anthropic_cut",
    ] {
        let out = read(n);
        assert!(!out.contains("[DONE]"), "{n}");
        assert!(!out.contains("finish_reason\":\"stop"), "{n}");
        let last = out.trim_end().rsplit("\n\n").next().unwrap();
        assert!(last.starts_with("data: {\"error\":{"), "{n}: {last}");
    }
}
