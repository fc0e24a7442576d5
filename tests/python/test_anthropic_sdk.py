"""The official Anthropic Python SDK against the local server's Messages
door (`/v1/messages`, `/v1/messages/count_tokens`, `/v1/models`): only the
base URL changes. Each call runs against an Anthropic-wire upstream (the
request passes through unchanged) and an OpenAI-wire one (translated both
ways, streaming included), and each test checks what the upstream got.
fixtures/agent_request.json is a coding agent's recorded request (Claude
Code's shape and headers), replayed with its tool_result follow-up,
stateless and in a stored conversation, counted, and across a fallback."""

import inspect
import json
from pathlib import Path

import anthropic
import pytest

from conftest import STREAM_TEXT, count_key

MODELS = {"anthropic": "anthropic/claude-sonnet-4-5", "openai": "openai/gpt-4o-mini"}
UPSTREAM_MODEL = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4o-mini"}
PROVIDER_KEYS = {"anthropic": "sk-ant-upstream-secret-for-tests", "openai": "sk-upstream-secret-for-tests"}
RECORDING = json.loads((Path(__file__).parent / "fixtures" / "agent_request.json").read_text())

WEATHER = {"name": "get_weather", "description": "The weather forecast for a city.",
           "input_schema": {"type": "object", "properties": {
               "city": {"type": "string"}, "days": {"type": "integer"}, "note": {"type": "string"}},
               "required": ["city"]}}
CLOCK = {"name": "get_time", "description": "The time in a timezone.",
         "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}


@pytest.fixture
def mocks(upstream, anthropic_upstream):
    return {"openai": upstream, "anthropic": anthropic_upstream}


def sdk(server, key):
    return anthropic.Anthropic(base_url=server.origin, api_key=key, max_retries=0)


def only(mocks, provider):
    """The one request `provider`'s upstream received; the other got none."""
    other = "openai" if provider == "anthropic" else "anthropic"
    assert mocks[other].received == []
    assert len(mocks[provider].received) == 1, mocks[provider].received
    return mocks[provider].received[0]


def check_upstream_auth(got, provider, client_key):
    """The provider's key went upstream, never the client's ctxgate key."""
    headers = dict(got["headers"].items())
    assert client_key not in json.dumps(headers)
    if provider == "anthropic":
        assert got["headers"]["x-api-key"] == PROVIDER_KEYS["anthropic"]
        assert got["headers"]["authorization"] is None
        assert got["headers"]["anthropic-version"] == "2023-06-01"
    else:
        assert got["headers"]["authorization"] == "Bearer " + PROVIDER_KEYS["openai"]
        assert got["headers"]["x-api-key"] is None
        assert got["headers"]["anthropic-beta"] is None


def as_params(blocks):
    """An answer's content blocks as request blocks (the next turn's history)."""
    return [b.model_dump(exclude_none=True, exclude={"citations", "caller"}) for b in blocks]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_messages_create(both_server, mocks, provider):
    """A whole answer; thinking signatures, cache_control and the beta
    header reach Anthropic unchanged; OpenAI gets Chat Completions."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Earlier thought.", "signature": "sig-OLD-123"},
            {"type": "text", "text": "Hello."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "What next?", "cache_control": {"type": "ephemeral"}}]},
    ]
    answer = c.beta.messages.create(model=MODELS[provider], max_tokens=256, system=system, messages=messages,
                                    betas=["interleaved-thinking-2025-05-14"])
    assert answer.type == "message" and answer.role == "assistant"
    assert answer.id.startswith("msg_")
    assert answer.model == MODELS[provider]
    assert [b.type for b in answer.content] == ["text"]
    assert answer.content[0].text == "saw: Hi | What next?"
    assert answer.stop_reason == "end_turn"

    got = only(mocks, provider)
    check_upstream_auth(got, provider, key)
    body = got["body"]
    assert body["model"] == UPSTREAM_MODEL[provider]
    if provider == "anthropic":
        assert got["path"] == "/v1/messages"
        assert got["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
        assert body["system"] == system
        assert body["messages"] == messages
        assert body["max_tokens"] == 256
        assert (answer.usage.input_tokens, answer.usage.output_tokens) == (25, 4)
        assert answer.usage.cache_read_input_tokens == 20
    else:
        assert got["path"] == "/v1/chat/completions"
        assert body["messages"][0] == {"role": "system", "content": "You are terse."}
        assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
        assert "Hello." in json.dumps(body["messages"][2])
        # Anthropic-only hints stay behind; the thinking block has no Chat form.
        assert "cache_control" not in json.dumps(body)
        assert "sig-OLD-123" not in json.dumps(body)
        assert (answer.usage.input_tokens, answer.usage.output_tokens) == (40, 3)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_messages_stream_with_tools(both_server, mocks, provider):
    """The SDK's stream helper accumulates the translated events into a
    message: the tool_use block's input whole though it came in pieces,
    stop_reason tool_use, and the upstream's usage."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    tool_input = {"city": "Oslo", "days": 3, "note": "smørrebrød ✓ — \"quoted\", {braces}"}
    mocks[provider].tool_input = tool_input
    kinds, json_pieces, text, started = [], 0, "", None
    with c.messages.stream(model=MODELS[provider], max_tokens=1024, tools=[WEATHER, CLOCK],
                           tool_choice={"type": "auto"},
                           messages=[{"role": "user", "content": "Weather in Oslo for 3 days?"}],
                           extra_headers={"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"}) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "message_start":
                started = event.message.usage
            if event.type == "input_json":
                json_pieces += 1
            if event.type == "text":
                text += event.text
        final = stream.get_final_message()

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert json_pieces >= 3, kinds
    assert text == "".join(STREAM_TEXT)
    assert final.stop_reason == "tool_use"
    tools = [b for b in final.content if b.type == "tool_use"]
    assert len(tools) == 1
    assert tools[0].name == "get_weather"
    assert tools[0].input == tool_input
    assert tools[0].id
    texts = [b.text for b in final.content if b.type == "text"]
    assert texts == ["".join(STREAM_TEXT)]

    got = only(mocks, provider)
    check_upstream_auth(got, provider, key)
    body = got["body"]
    assert body["stream"] is True
    if provider == "anthropic":
        thinking = [b for b in final.content if b.type == "thinking"]
        assert thinking[0].thinking == "The user wants a lookup."
        assert thinking[0].signature == mocks["anthropic"].signature
        assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
        assert started.input_tokens == 1200
        assert (final.usage.input_tokens, final.usage.output_tokens) == (1200, 87)
        assert final.usage.cache_read_input_tokens == 9000
        assert final.usage.cache_creation_input_tokens == 300
        assert body["tools"] == [WEATHER, CLOCK]
        assert body["tool_choice"] == {"type": "auto"}
        assert got["headers"]["anthropic-beta"] == "fine-grained-tool-streaming-2025-05-14"
    else:
        assert [b.type for b in final.content] == ["text", "tool_use"]
        # OpenAI reports usage only at the end: message_start has an estimate.
        assert 0 < started.input_tokens
        assert (final.usage.input_tokens, final.usage.output_tokens) == (321, 45)
        assert body["tools"] == [
            {"type": "function", "function": {"name": t["name"], "description": t["description"],
                                              "parameters": t["input_schema"]}} for t in (WEATHER, CLOCK)]
        assert body["tool_choice"] == "auto"
        assert body["messages"] == [{"role": "user", "content": "Weather in Oslo for 3 days?"}]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_messages_count_tokens(both_server, mocks, provider):
    """Anthropic's own count for its models; ctxgate's estimate, marked, elsewhere."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    raw = c.messages.with_raw_response.count_tokens(
        model=MODELS[provider], system="Be brief.", tools=[WEATHER],
        messages=[{"role": "user", "content": "How many tokens is this sentence?"}])
    counted = raw.parse()
    if provider == "anthropic":
        assert counted.input_tokens == mocks["anthropic"].count_tokens
        assert raw.headers["x-ctxgate-token-count"] == "provider"
        got = only(mocks, "anthropic")
        check_upstream_auth(got, "anthropic", key)
        assert got["path"] == "/v1/messages/count_tokens"
        assert got["body"]["model"] == UPSTREAM_MODEL["anthropic"]
        assert got["body"]["tools"] == [WEATHER]
        assert "max_tokens" not in got["body"]
    else:
        assert counted.input_tokens > 10, "an estimate, never a made-up zero"
        assert raw.headers["x-ctxgate-token-count"] == "estimate"
        assert mocks["openai"].received == [] and mocks["anthropic"].received == []


def test_models_list_pages_through_the_sdk_paginator(both_server, mocks):
    """`models.list` in Anthropic's shape; the SDK's auto-pagination walks
    pages of one by `after_id` and sees every model exactly once."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    whole = c.models.list(limit=1000)
    assert whole.has_more is False
    ids = [m.id for m in whole.data]
    assert MODELS["anthropic"] in ids and MODELS["openai"] in ids
    assert whole.first_id == ids[0] and whole.last_id == ids[-1]
    assert all(m.type == "model" for m in whole.data)

    first = c.models.list(limit=1)
    assert first.has_more is True and len(first.data) == 1
    walked = [m.id for m in c.models.list(limit=1)]
    assert walked == ids
    assert c.models.list(limit=2, after_id=ids[0]).data[0].id == ids[1]
    assert mocks["openai"].received == [] and mocks["anthropic"].received == []


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_sdk_sees_anthropic_errors(both_server, mocks, provider):
    """A body without max_tokens (sent raw: the SDK would not) is the SDK's
    BadRequestError naming the field; a wrong key its AuthenticationError."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    with pytest.raises(anthropic.BadRequestError) as e:
        c.post("/v1/messages", cast_to=object,
               body={"model": MODELS[provider], "messages": [{"role": "user", "content": "hi"}]})
    assert e.value.status_code == 400
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert e.value.body["error"]["message"].startswith("max_tokens")
    assert "max_tokens" in str(e.value)

    with pytest.raises(anthropic.AuthenticationError) as e:
        sdk(both_server, "cgk_not-a-key").messages.create(
            model=MODELS[provider], max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"
    assert mocks["openai"].received == [] and mocks["anthropic"].received == []


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_conversation_by_header(both_server, mocks, provider):
    """Two turns with `x-conversation-id`: the second upstream request
    carries the first turn and its answer before the new question."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    conv = {"x-conversation-id": f"sdk-conv-{provider}"}
    r1 = c.messages.create(model=MODELS[provider], max_tokens=100, extra_headers=conv,
                           messages=[{"role": "user", "content": "My favourite colour is teal."}])
    assert r1.content[0].text == "saw: My favourite colour is teal."
    raw = c.messages.with_raw_response.create(model=MODELS[provider], max_tokens=100, extra_headers=conv,
                                              messages=[{"role": "user", "content": "What is my favourite colour?"}])
    assert raw.headers["x-conversation-id"] == conv["x-conversation-id"]
    assert "teal" in raw.parse().content[0].text

    second = mocks[provider].received[1]["body"]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert "My favourite colour is teal." in json.dumps(second[0])
    assert "saw: My favourite colour is teal." in json.dumps(second[1])
    assert "What is my favourite colour?" in json.dumps(second[2])


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_streamed_tool_call_continues_in_a_stored_conversation(both_server, mocks, provider):
    """A streamed tool_use answer is stored whole; the next turn sends only
    the tool_result (with a Bearer key, as `auth_token`), and the upstream
    gets the stored call (with its thinking signature and redacted thinking,
    for Anthropic) before it."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    conv = {"x-conversation-id": f"sdk-tools-{provider}"}
    mocks["anthropic"].redacted = "EmwKAhgBEgyREDACTED=="
    with c.messages.stream(model=MODELS[provider], max_tokens=512, tools=[WEATHER], extra_headers=conv,
                           messages=[{"role": "user", "content": "Weather in Oslo?"}]) as stream:
        first = stream.get_final_message()
    call = next(b for b in first.content if b.type == "tool_use")

    bearer = anthropic.Anthropic(base_url=both_server.origin, auth_token=key, max_retries=0)
    second = bearer.messages.create(
        model=MODELS[provider], max_tokens=512, tools=[WEATHER], extra_headers=conv,
        messages=[{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 °C"}]}])
    assert second.stop_reason in ("end_turn", "tool_use")

    mock = mocks[provider]
    assert len(mock.received) == 2
    check_upstream_auth(mock.received[1], provider, key)
    history = mock.received[1]["body"]["messages"]
    if provider == "anthropic":
        assert [m["role"] for m in history] == ["user", "assistant", "user"]
        assert [b["type"] for b in history[1]["content"]] == ["thinking", "redacted_thinking", "text", "tool_use"]
        assert history[1]["content"][0]["signature"] == mock.signature
        assert history[1]["content"][1] == {"type": "redacted_thinking", "data": mock.redacted}
        assert history[1]["content"][3] == {"type": "tool_use", "id": call.id, "name": "get_weather",
                                            "input": mock.tool_input}
        assert history[2]["content"][0]["tool_use_id"] == call.id
    else:
        assert [m["role"] for m in history] == ["user", "assistant", "tool"]
        calls = history[1]["tool_calls"]
        assert [c["id"] for c in calls] == [call.id]
        assert json.loads(calls[0]["function"]["arguments"]) == mock.tool_input
        assert history[2]["tool_call_id"] == call.id
        assert "Sunny" in json.dumps(history[2]["content"])


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_stream_cut_upstream_is_an_error_event_the_sdk_raises(both_server, mocks, provider):
    """The upstream hangs up mid-answer: the SDK has the text so far, then
    raises the `error` event ctxgate sends; the turn is not stored."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    conv = {"x-conversation-id": f"sdk-cut-{provider}"}
    # Cut after the first text delta (OpenAI: after two), before any stop.
    mocks[provider].cut_after = 9 if provider == "anthropic" else 3
    text = ""
    with pytest.raises(anthropic.APIStatusError) as e:
        with c.messages.stream(model=MODELS[provider], max_tokens=100, extra_headers=conv,
                               messages=[{"role": "user", "content": "Tell me."}]) as stream:
            for event in stream:
                if event.type == "text":
                    text += event.text
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] in ("api_error", "overloaded_error")
    assert text and "".join(STREAM_TEXT).startswith(text)

    mocks[provider].cut_after = None
    c.messages.create(model=MODELS[provider], max_tokens=100, extra_headers=conv,
                      messages=[{"role": "user", "content": "Again."}])
    last = mocks[provider].received[-1]["body"]["messages"]
    assert "Tell me." not in json.dumps(last), "the failed turn was not stored"


def test_anthropic_s_error_event_mid_stream_reaches_the_sdk(both_server, mocks):
    """Anthropic reports overload mid-stream: the SDK raises it, typed as
    Anthropic typed it, after the text so far."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    mocks["anthropic"].cut_after = 9
    mocks["anthropic"].error_event = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    text = ""
    with pytest.raises(anthropic.APIStatusError) as e:
        with c.messages.stream(model=MODELS["anthropic"], max_tokens=100,
                               messages=[{"role": "user", "content": "Tell me."}]) as stream:
            for event in stream:
                if event.type == "text":
                    text += event.text
    # A prefix: the stream redactor holds back a short tail it never releases on failure.
    assert STREAM_TEXT[0].startswith(text)
    assert e.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": e.value.body["error"]["message"]}}


def replay(c, recording, model=None, messages=None, headers=None):
    """Sends the recorded request through the SDK's stream helper, with the
    recorded headers; returns the events' kinds and the final message."""
    body = {k: v for k, v in recording["body"].items() if k != "stream"}
    if model is not None:
        body["model"] = model
    if messages is not None:
        body["messages"] = messages
    headers = {**{k: v for k, v in recording["headers"].items()
                  if k not in ("accept", "content-type", "anthropic-version")}, **(headers or {})}
    # Fields this SDK version has no parameter for (temperature, in 2.x) go as extra_body.
    known = inspect.signature(c.messages.stream).parameters
    extra = {k: body.pop(k) for k in list(body) if k not in known}
    # Claude Code posts to /v1/messages?beta=true.
    with c.messages.stream(**body, extra_headers=headers, extra_body=extra,
                           extra_query={"beta": "true"}) as stream:
        kinds = [e.type for e in stream]
        return kinds, stream.get_final_message()


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_recorded_coding_agent_request_replayed(both_server, mocks, provider):
    """A coding agent's recorded first request (a large cached system
    prompt, twenty tools, anthropic-beta, thinking, streaming) and its
    follow-up with the tool_result: Anthropic gets both bodies as sent
    (model aside) with the beta header; OpenAI gets 20 function tools and
    then a tool message; either way the SDK parses a `Read` tool_use."""
    key = both_server.create_key("agent-tenant")
    c = sdk(both_server, key)
    mock = mocks[provider]
    mock.tool_name = "Read"
    mock.tool_input = {"file_path": "/home/dev/parser/src/parse.rs", "offset": 1, "limit": 200}
    if provider == "anthropic":
        mock.redacted = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj"
    recorded = RECORDING["body"]
    assert len(recorded["tools"]) == 20

    # Anthropic: the recorded bare model id, an alias (conftest); OpenAI: a model of its own.
    model = None if provider == "anthropic" else MODELS[provider]
    kinds, first = replay(c, RECORDING, model)
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert first.stop_reason == "tool_use"
    call = [b for b in first.content if b.type == "tool_use"]
    assert [(b.name, b.input) for b in call] == [("Read", mock.tool_input)]

    # As the agent does, the follow-up's message breakpoint moves to its last block.
    history = [{"role": "user", "content": [{k: v for k, v in b.items() if k != "cache_control"}
                                            for b in recorded["messages"][0]["content"]]}] + [
        {"role": "assistant", "content": as_params(first.content)},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call[0].id,
                                      "content": "fn parse(input: &str) -> Result<Ast> {\n    if input.is_empty() {"
                                                 " return Err(Error::Empty); }\n"},
                                     {"type": "text", "text": "So?", "cache_control": {"type": "ephemeral"}}]},
    ]
    mock.tool_name = None
    kinds, second = replay(c, RECORDING, model, messages=history)
    assert kinds[-1] == "message_stop"
    assert second.content[-1].type == "tool_use"  # the mock calls a tool whenever tools are offered

    assert len(mock.received) == 2
    for got in mock.received:
        check_upstream_auth(got, provider, key)
    first_up, second_up = (g["body"] for g in mock.received)
    if provider == "anthropic":
        assert [b.type for b in first.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
        assert first.content[0].signature == mocks["anthropic"].signature
        assert first.content[1].data == mock.redacted
        for got, messages in zip(mock.received, (recorded["messages"], history)):
            assert got["headers"]["anthropic-beta"] == RECORDING["headers"]["anthropic-beta"]
            assert got["path"] == "/v1/messages"
            assert got["body"] == {**recorded, "messages": messages}
        # The thinking block went back with its signature, as Anthropic requires.
        assert second_up["messages"][1]["content"][0]["signature"] == mocks["anthropic"].signature
        assert second_up["messages"][1]["content"][1] == {"type": "redacted_thinking", "data": mock.redacted}
    else:
        assert [b.type for b in first.content] == ["text", "tool_use"]
        for body in (first_up, second_up):
            assert body["stream"] is True
            assert [t["function"]["name"] for t in body["tools"]] == [t["name"] for t in recorded["tools"]]
            assert all(t["type"] == "function" for t in body["tools"])
            read = next(t for t in body["tools"] if t["function"]["name"] == "Read")
            assert read["function"]["parameters"]["required"] == ["file_path"]
            assert "cache_control" not in json.dumps(body)
            assert body["messages"][0]["role"] == "system"
            assert "You are Claude Code" in json.dumps(body["messages"][0])
        roles = [m["role"] for m in second_up["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "user"]
        assistant, tool = second_up["messages"][2], second_up["messages"][3]
        assert assistant["tool_calls"][0]["function"]["name"] == "Read"
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == \
            {"file_path": "/home/dev/parser/src/parse.rs", "offset": 1, "limit": 200}
        assert tool["tool_call_id"] == assistant["tool_calls"][0]["id"] == call[0].id
        assert "Error::Empty" in json.dumps(tool["content"])


def test_logs_of_the_messages_door_carry_no_content_or_keys(both_server, mocks):
    """Access lines for /v1/messages name tenant, model and status; no
    message content, client key or provider key reaches the log."""
    key = both_server.create_key("sdk-logs")
    c = sdk(both_server, key)
    for provider in ("anthropic", "openai"):
        c.messages.create(model=MODELS[provider], max_tokens=50,
                          messages=[{"role": "user", "content": "zebra-secret-phrase"}])
        with c.messages.stream(model=MODELS[provider], max_tokens=50, tools=[WEATHER],
                               messages=[{"role": "user", "content": "zebra-secret-phrase"}]) as s:
            s.get_final_message()
    c.messages.count_tokens(model=MODELS["anthropic"], messages=[{"role": "user", "content": "zebra-secret-phrase"}])
    both_server.stop()
    log = "".join(both_server.log)
    for secret in ("zebra-secret-phrase", "Oslo", key, *PROVIDER_KEYS.values()):
        assert secret not in log
    lines = [json.loads(line) for line in both_server.log if line.strip()]
    access = [l for l in lines if l.get("message") == "request" and l.get("path") == "/v1/messages"]
    assert [(l["status"], l["model"], l["tenant"]) for l in access] == [
        (200, MODELS[p], "sdk-logs") for p in ("anthropic", "anthropic", "openai", "openai")]
    counts = [l for l in lines if l.get("message") == "request" and l.get("path") == "/v1/messages/count_tokens"]
    assert counts and counts[-1]["status"] == 200


def test_recorded_agent_request_falls_back_across_providers(both_server, mocks):
    """An alias whose Anthropic model is overloaded falls back to an OpenAI
    model: the agent's request is translated there (20 function tools, no
    Anthropic-only hints) and its answer streams back as Anthropic events."""
    key = both_server.create_key("agent-tenant")
    c = sdk(both_server, key)
    mocks["anthropic"].fail_with = (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    mocks["openai"].tool_name = "Read"
    mocks["openai"].tool_input = {"file_path": "/home/dev/parser/src/parse.rs"}
    kinds, answer = replay(c, RECORDING, "agent")
    assert kinds[-1] == "message_stop"
    assert answer.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in answer.content if b.type == "tool_use"] == \
        [("Read", {"file_path": "/home/dev/parser/src/parse.rs"})]
    tried = mocks["anthropic"].received
    assert len(tried) == 1 and tried[0]["headers"]["anthropic-beta"] == RECORDING["headers"]["anthropic-beta"]
    up = mocks["openai"].received
    assert len(up) == 1
    assert up[0]["body"]["model"] == "gpt-4o-mini"
    assert len(up[0]["body"]["tools"]) == 20
    assert "cache_control" not in json.dumps(up[0]["body"])
    assert up[0]["headers"]["anthropic-beta"] is None


def test_recorded_agent_session_in_a_stored_conversation_keeps_prompt_caching(both_server, mocks):
    """The agent's request (four cache_control hints of its own) continued
    in a stored conversation: the client's hints are kept and never pushed
    past Anthropic's limit of four; once the client leaves room, ctxgate's
    breakpoint marks the end of the stored history."""
    key = both_server.create_key("agent-tenant")
    c = sdk(both_server, key)
    mock = mocks["anthropic"]
    mock.tool_name = "Read"
    mock.tool_input = {"file_path": "/home/dev/parser/src/parse.rs"}
    conv = {"x-conversation-id": "agent-session"}
    recorded = RECORDING["body"]
    assert count_key(recorded, "cache_control") == 4

    _, first = replay(c, RECORDING, headers=conv)
    assert first.stop_reason == "tool_use"
    up = mock.received[-1]["body"]
    assert up["system"] == recorded["system"] and up["tools"] == recorded["tools"]
    assert up["messages"] == recorded["messages"]

    call = next(b for b in first.content if b.type == "tool_use")
    result = [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": "fn parse(input: &str)"},
        {"type": "text", "text": "So?"}]}]
    _, second = replay(c, RECORDING, messages=result, headers=conv)
    assert second.stop_reason == "tool_use"
    up = mock.received[-1]["body"]
    assert count_key(up, "cache_control") == 4
    assert up["system"] == recorded["system"] and up["tools"] == recorded["tools"]
    assert [m["role"] for m in up["messages"]] == ["user", "assistant", "user"]
    # Hints are the client's for one request: the stored turn has none.
    assert up["messages"][0] == {"role": "user", "content": [
        {k: v for k, v in b.items() if k != "cache_control"} for b in recorded["messages"][0]["content"]]}
    assert up["messages"][2]["content"] == result[0]["content"]
    stored_answer = up["messages"][1]["content"]
    assert [b["type"] for b in stored_answer] == ["thinking", "text", "tool_use"]
    # ctxgate's own breakpoint: the end of the stored history.
    assert "cache_control" in stored_answer[-1]


def test_recorded_agent_request_counted(both_server, mocks):
    """The agent counts its context before compacting it: the recorded
    request's countable fields go to Anthropic's count_tokens as sent (the
    mock refuses turn settings, as Anthropic does) with the beta header;
    an OpenAI model gets ctxgate's estimate, in the thousands for this prompt."""
    key = both_server.create_key("agent-tenant")
    c = sdk(both_server, key)
    countable = {k: v for k, v in RECORDING["body"].items()
                 if k in ("model", "messages", "system", "tools", "thinking")}
    beta = {"anthropic-beta": RECORDING["headers"]["anthropic-beta"]}
    counted = c.messages.count_tokens(**countable, extra_headers=beta, extra_query={"beta": "true"})
    assert counted.input_tokens == mocks["anthropic"].count_tokens
    got = only(mocks, "anthropic")
    assert got["path"] == "/v1/messages/count_tokens"
    assert got["body"] == countable
    assert got["headers"]["anthropic-beta"] == beta["anthropic-beta"]

    raw = c.messages.with_raw_response.count_tokens(**{**countable, "model": MODELS["openai"]})
    assert raw.headers["x-ctxgate-token-count"] == "estimate"
    # The system prompt alone is about 25,000 characters.
    assert 4000 < raw.parse().input_tokens < 40000
    assert mocks["openai"].received == []


DELTAS = {"text": {"text_delta"}, "tool_use": {"input_json_delta"},
          "thinking": {"thinking_delta", "signature_delta"}, "redacted_thinking": set()}


def check_grammar(events):
    """Anthropic's event sequence: message_start first (pings only after
    it), then blocks one at a time with indices 0, 1, ... and only the
    deltas of their type, then one message_delta and message_stop last."""
    names = [n for n, _ in events]
    assert names[0] == "message_start", names
    assert names[-2:] == ["message_delta", "message_stop"], names
    assert names.count("message_delta") == 1 and names.count("message_stop") == 1
    open_block, next_index, kinds = None, 0, []
    for name, data in events[1:-2]:
        assert data["type"] == name
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_block is None and data["index"] == next_index, events
            open_block = data["content_block"]["type"]
            kinds.append(open_block)
        elif name == "content_block_delta":
            assert data["index"] == next_index and data["delta"]["type"] in DELTAS[open_block], data
        elif name == "content_block_stop":
            assert data["index"] == next_index and open_block is not None
            open_block, next_index = None, next_index + 1
        else:
            raise AssertionError(f"unexpected event {name}")
    assert open_block is None
    return kinds


def raw_events(c, **params):
    """The SSE events of a streamed create, as `(event, data)` from the wire."""
    out, name = [], None
    with c.messages.with_streaming_response.create(stream=True, **params) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                out.append((name, json.loads(line.removeprefix("data: "))))
    return out


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_event_sequence_on_the_wire(both_server, mocks, provider):
    """The raw events the SDK parses follow Anthropic's grammar for text and
    tool answers of either upstream, and the recorded agent request's."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    mocks["anthropic"].redacted = "EmwKAhgBEgyREDACTED=="
    text_only = raw_events(c, model=MODELS[provider], max_tokens=100,
                           messages=[{"role": "user", "content": "Hello"}])
    with_tools = raw_events(c, model=MODELS[provider], max_tokens=100, tools=[WEATHER],
                            messages=[{"role": "user", "content": "Weather?"}])
    body = {k: v for k, v in RECORDING["body"].items() if k != "stream"}
    if provider == "openai":
        body["model"] = MODELS[provider]
    known = inspect.signature(c.messages.create).parameters
    agent = raw_events(c, **{k: v for k, v in body.items() if k in known},
                       extra_body={k: v for k, v in body.items() if k not in known},
                       extra_headers={"anthropic-beta": RECORDING["headers"]["anthropic-beta"]})
    thinking = ["thinking", "redacted_thinking"] if provider == "anthropic" else []
    assert check_grammar(text_only) == thinking + ["text"]
    assert check_grammar(with_tools) == thinking + ["text", "tool_use"]
    assert check_grammar(agent) == thinking + ["text", "tool_use"]
    for events, stop in ((text_only, "end_turn"), (with_tools, "tool_use"), (agent, "tool_use")):
        assert events[-2][1]["delta"]["stop_reason"] == stop
        assert events[-2][1]["usage"]["output_tokens"] == (87 if provider == "anthropic" else 45)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_idempotent_retry_replays_the_stream(both_server, mocks, provider):
    """A streamed turn retried with its Idempotency-Key replays the same
    events without calling the upstream again, and the SDK's stream helper
    parses a replay as the original; the same key with another
    anthropic-beta is a 422."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    headers = {"Idempotency-Key": f"sdk-retry-{provider}", "x-conversation-id": f"sdk-idem-{provider}"}
    params = dict(model=MODELS[provider], max_tokens=100, tools=[WEATHER],
                  messages=[{"role": "user", "content": "Weather in Oslo?"}], extra_headers=headers)
    first = raw_events(c, **params)
    again = raw_events(c, **params)
    assert again == first
    assert len(mocks[provider].received) == 1
    # The stream helper orders the body's keys its own way: a retry through
    # it is another body, under its own key.
    helper = {**params, "extra_headers": {**headers, "Idempotency-Key": f"sdk-helper-{provider}"}}
    finals = []
    for _ in range(2):
        with c.messages.stream(**helper) as stream:
            finals.append(stream.get_final_message())
    assert finals[0] == finals[1]
    assert [(b.name, b.input) for b in finals[1].content if b.type == "tool_use"] == \
        [("get_weather", mocks[provider].tool_input)]
    assert len(mocks[provider].received) == 2

    with pytest.raises(anthropic.UnprocessableEntityError) as e:
        # The same body as the first, with a header that changes its meaning.
        raw_events(c, **{**params, "extra_headers": {**headers, "anthropic-beta": "other-2025-01-01"}})
    assert e.value.body["type"] == "error"
    assert len(mocks[provider].received) == 2


def test_a_user_block_openai_cannot_take_is_never_dropped_silently(both_server, mocks):
    """A search_result the user sends to an OpenAI model either reaches it
    (as text) or is refused with a 400 naming the block: never lost."""
    key = both_server.create_key("sdk-tenant")
    c = sdk(both_server, key)
    block = {"type": "search_result", "source": "https://example.com/oslo", "title": "Oslo weather",
             "content": [{"type": "text", "text": "Oslo: sunny, 21 degrees"}]}
    try:
        c.messages.create(model=MODELS["openai"], max_tokens=50, messages=[
            {"role": "user", "content": [block, {"type": "text", "text": "Summarise the result."}]}])
    except anthropic.BadRequestError as e:
        assert e.body["error"]["message"].startswith("messages[0].content[0]")
        assert mocks["openai"].received == []
        return
    assert "sunny, 21 degrees" in json.dumps(mocks["openai"].received[0]["body"])
