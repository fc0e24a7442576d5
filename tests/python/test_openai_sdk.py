"""The official OpenAI Python SDK against the local server: only the base
URL changes. Turn 3 of a stored conversation needs turn 1's content."""

import json

import openai
import pytest


def client(server, key):
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_three_turn_conversation_keeps_context(server, upstream):
    key = server.create_key("sdk-tenant")
    c = client(server, key)
    conv = {"conversation_id": "sdk-trip"}

    r1 = c.chat.completions.create(model="openai/gpt-4o-mini", extra_body=conv,
                                   messages=[{"role": "user", "content": "My favourite colour is teal."}])
    assert r1.choices[0].message.content == "saw: My favourite colour is teal."
    assert r1.choices[0].finish_reason == "stop"
    assert r1.usage.total_tokens == 13
    assert r1.model == "openai/gpt-4o-mini"

    c.chat.completions.create(model="openai/gpt-4o-mini", extra_body=conv,
                              messages=[{"role": "user", "content": "I also like hiking."}])
    r3 = c.chat.completions.create(model="openai/gpt-4o-mini", extra_body=conv,
                                   messages=[{"role": "user", "content": "What is my favourite colour?"}])

    # The upstream's third request carried turn 1 (and its answer) before turn 3.
    third = upstream.received[2]["body"]["messages"]
    assert [m["role"] for m in third] == ["user", "assistant", "user", "assistant", "user"]
    assert "teal" in third[0]["content"]
    assert "teal" in third[1]["content"]
    assert "teal" in r3.choices[0].message.content
    assert upstream.received[2]["headers"]["Authorization"] == "Bearer sk-upstream-secret-for-tests"

    # The conversation id comes back in the body (extension field) and header.
    raw = c.chat.completions.with_raw_response.create(
        model="echo", extra_body=conv, messages=[{"role": "user", "content": "ping"}])
    assert raw.headers["x-conversation-id"] == "sdk-trip"
    assert raw.parse().model_extra["conversation_id"] == "sdk-trip"


def test_sdk_sees_openai_style_errors(server):
    key = server.create_key("sdk-tenant")
    c = client(server, key)
    with pytest.raises(openai.AuthenticationError):
        client(server, "cgk_not-a-key").chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="echo", n=2, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="nobody/model", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="echo", messages=[{"role": "oracle", "content": "x"}])
    assert e.value.body["param"] == "messages[0].role"


def test_models_list_and_revocation_through_the_cli(server):
    key = server.create_key("sdk-tenant")
    c = client(server, key)
    ids = [m.id for m in c.models.list()]
    assert "echo" in ids and "openai/gpt-4o-mini" in ids
    key_id = [line.split("\t")[0] for line in server.cli("keys", "list", "--tenant", "sdk-tenant").splitlines()][-1]
    assert key_id.startswith("key_")
    assert "revoked" in server.cli("keys", "revoke", key_id)


def test_logs_are_json_and_never_carry_content_or_keys(server):
    key = server.create_key("sdk-tenant")
    c = client(server, key)
    c.chat.completions.create(model="openai/gpt-4o", extra_body={"conversation_id": "logs"},
                              messages=[{"role": "user", "content": "zebra-secret-phrase"}])
    server.stop()
    log = "".join(server.log)
    assert "zebra-secret-phrase" not in log
    assert key not in log
    assert "sk-upstream-secret-for-tests" not in log
    import json
    lines = [json.loads(line) for line in server.log if line.strip()]
    access = [l for l in lines if l.get("message") == "request" and l.get("path") == "/v1/chat/completions"]
    assert access and access[-1]["status"] == 200
    assert access[-1]["tenant"] == "sdk-tenant"
    assert access[-1]["model"] == "openai/gpt-4o"
    assert access[-1]["completion_tokens"] == 3
    assert "request_id" in access[-1]


def test_prompt_caching_through_the_sdk(server, upstream):
    """Issue 14: a stored conversation's requests to OpenAI share one
    prompt_cache_key and grow by appending only; a client's cache_control
    parts are taken (for Anthropic models) but never sent to OpenAI, nor
    stored; a client's own prompt_cache_key wins."""
    key = server.create_key("sdk-cache")
    c = client(server, key)
    conv = {"conversation_id": "sdk-cache-1"}
    hinted = {"type": "text", "text": "Long instructions.", "cache_control": {"type": "ephemeral"}}
    for q in ("first", "second"):
        c.chat.completions.create(model="openai/gpt-4o-mini", extra_body=conv,
                                  messages=[{"role": "user", "content": [hinted, {"type": "text", "text": q}]}])
    first, second = upstream.received[-2]["body"], upstream.received[-1]["body"]
    assert first["prompt_cache_key"] == second["prompt_cache_key"]
    assert first["prompt_cache_key"].startswith("ctxgate-")
    assert "sdk-cache" not in first["prompt_cache_key"]
    assert "cache_control" not in json.dumps(second)
    assert second["messages"][:len(first["messages"])] == first["messages"]

    c.chat.completions.create(model="openai/gpt-4o-mini", extra_body={**conv, "prompt_cache_key": "mine"},
                              messages=[{"role": "user", "content": "third"}])
    assert upstream.received[-1]["body"]["prompt_cache_key"] == "mine"
