"""The official OpenAI Python SDK's streaming iterator against the local
server, for an OpenAI-format and an Anthropic-format mock upstream that
stream their answers: full text, tool calls and usage arrive."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from conftest import Server, free_port

TEXT_PIECES = ["Hello", " from the", " streaming", " mock — ", "日本", " ✓"]
TEXT = "".join(TEXT_PIECES)


def openai_events(body):
    """An OpenAI chat.completion.chunk stream: text, or two parallel tool calls."""
    def chunk(delta, finish=None, usage=None, choices=True):
        return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [],
                "usage": usage}
    out = [chunk({"role": "assistant", "content": ""})]
    if body.get("tools"):
        out += [
            chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                   "function": {"name": "get_time", "arguments": "{\"tz\":"}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": "\"CET\"}"}}]}),
            chunk({}, "tool_calls"),
        ]
    else:
        out += [chunk({"content": p}) for p in TEXT_PIECES] + [chunk({}, "stop")]
    out.append(chunk(None, usage={"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}, choices=False))
    return [("", json.dumps(e)) for e in out] + [("", "[DONE]")]


def anthropic_events(body):
    """An Anthropic Messages stream: text, or text then a tool_use block."""
    out = [("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": body["model"],
        "usage": {"input_tokens": 17, "output_tokens": 1}}}), ("ping", {"type": "ping"})]
    out.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}}))
    for p in TEXT_PIECES:
        out.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": p}}))
    out.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    stop = "end_turn"
    if body.get("tools"):
        stop = "tool_use"
        out += [
            ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ]
    out += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": 12}}),
            ("message_stop", {"type": "message_stop"})]
    return [(name, json.dumps(data)) for name, data in out]


class StreamingMock:
    """Answers a streamed request with `events(body)` as SSE, one write per event."""

    def __init__(self, events):
        self.received = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.received.append({"path": self.path, "headers": self.headers, "body": body})
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                try:
                    for name, data in events(body):
                        event = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
                        self.wfile.write(event.encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    # The gateway hung up: its client closed the stream early.
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def mocks():
    o, a = StreamingMock(openai_events), StreamingMock(anthropic_events)
    yield {"openai": o, "anthropic": a}
    o.close()
    a.close()


@pytest.fixture
def streaming_server(mocks, tmp_path):
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CTXGATE_STORE": "embedded",
        "CTXGATE_DATA_DIR": str(tmp_path / "data"),
        "CTXGATE_LISTEN": f"127.0.0.1:{port}",
        "OPENAI_BASE_URL": mocks["openai"].url + "/v1",
        "OPENAI_API_KEY": "sk-upstream-openai",
        "ANTHROPIC_BASE_URL": mocks["anthropic"].url,
        "ANTHROPIC_API_KEY": "sk-upstream-anthropic",
        "RUST_LOG": "info",
    }
    srv = Server(os.environ["CTXGATE_BIN"], env)
    srv.base_url = f"http://127.0.0.1:{port}/v1"
    yield srv
    srv.stop()


def collect(stream):
    """What an application builds from the SDK's chunk iterator."""
    text, calls, usage, finish, roles = "", {}, None, None, []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            d = choice.delta
            if d.role:
                roles.append(d.role)
            text += d.content or ""
            for tc in d.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    call["id"] = tc.id
                if tc.function and tc.function.name:
                    call["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    call["arguments"] += tc.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    return text, calls, usage, finish, roles


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize("model,prompt,completion", [
    ("openai/gpt-4o-mini", 21, 9),
    ("anthropic/claude-sonnet-4-5", 17, 12),
])
def test_sdk_streams_text_and_usage(streaming_server, mocks, model, prompt, completion):
    key = streaming_server.create_key("stream-tenant")
    c = openai.OpenAI(base_url=streaming_server.base_url, api_key=key, max_retries=0)
    stream = c.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True},
        extra_body={"conversation_id": "sdk-stream"},
        messages=[{"role": "user", "content": "say hello"}])
    text, calls, usage, finish, roles = collect(stream)
    assert text == TEXT
    assert calls == {}
    assert finish == "stop"
    assert roles == ["assistant"]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (prompt, completion, prompt + completion)

    # The streamed answer was stored: the next turn sends it back as history.
    provider = model.split("/")[0]
    c.chat.completions.create(model="echo", extra_body={"conversation_id": "sdk-stream"},
                              messages=[{"role": "user", "content": "and again"}])
    c.chat.completions.create(model=model, stream=True, extra_body={"conversation_id": "sdk-stream"},
                              messages=[{"role": "user", "content": "third"}]).close()
    history = mocks[provider].received[-1]["body"]["messages"]
    assistant = [m for m in history if m["role"] == "assistant"]
    first_answer = assistant[0]["content"]
    if isinstance(first_answer, list):
        first_answer = "".join(b.get("text", "") for b in first_answer)
    assert first_answer == TEXT


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"])
def test_sdk_streams_tool_calls(streaming_server, model):
    key = streaming_server.create_key("stream-tenant")
    c = openai.OpenAI(base_url=streaming_server.base_url, api_key=key, max_retries=0)
    stream = c.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True}, tools=TOOLS,
        messages=[{"role": "user", "content": "weather and time in Oslo?"}])
    text, calls, usage, finish, _ = collect(stream)
    assert finish == "tool_calls"
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    if model.startswith("openai"):
        assert text == ""
        assert calls[1]["name"] == "get_time"
        assert json.loads(calls[1]["arguments"]) == {"tz": "CET"}
    else:
        assert text == TEXT
        assert list(calls) == [0]
    assert usage.total_tokens > 0


def test_sdk_sees_a_bad_stream_option_as_a_400(streaming_server):
    key = streaming_server.create_key("stream-tenant")
    c = openai.OpenAI(base_url=streaming_server.base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="echo", stream_options={"include_usage": True},
                                  messages=[{"role": "user", "content": "x"}])
    assert e.value.body["param"] == "stream_options"
