"""Fixtures: mock OpenAI and Anthropic upstreams and a real `ctxgate serve` process."""

import json
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sys
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "examples" / "crm" / "server.py"


class MockOpenAI:
    """An OpenAI Chat Completions server that reports what it received."""

    def __init__(self):
        self.received = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.received.append({"path": self.path, "headers": self.headers, "body": body})
                if body.get("stream"):
                    events = [("", json.dumps(c)) for c in outer.chunks(body)] + [("", "[DONE]")]
                    send_sse(self, events[:outer.cut_after])
                    return
                users = [m["content"] if isinstance(m["content"], str)
                         else " ".join(p.get("text", "") for p in m["content"])
                         for m in body["messages"] if m["role"] == "user"]
                choice = {"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": "saw: " + " | ".join(users)}}
                if outer.calls_tool(body):
                    choice = {"index": 0, "finish_reason": "tool_calls", "message": {
                        "role": "assistant", "content": None, "tool_calls": [outer.tool_call(body)]}}
                reply = {
                    "id": "chatcmpl-mock",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [choice],
                    "usage": {"prompt_tokens": 10 * len(body["messages"]), "completion_tokens": 3,
                              "total_tokens": 10 * len(body["messages"]) + 3},
                }
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def chunks(self, body):
        """A streamed answer as chat.completion.chunk objects: text, then (when
        the request has tools) a call of the first tool whose arguments
        arrive in several pieces, then usage in a final chunk of its own."""
        def chunk(delta, finish=None, usage=None):
            return {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1,
                    "model": body["model"], "usage": usage,
                    "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"content": p}) for p in STREAM_TEXT]
        finish = "stop"
        if body.get("tools") and (not self.tool_then_answer or self.calls_tool(body)):
            finish = "tool_calls"
            name = self.tool_name or body["tools"][0]["function"]["name"]
            args = json.dumps(self.tool_input, ensure_ascii=False)
            out.append(chunk({"tool_calls": [{"index": 0, "id": "call_mock1", "type": "function",
                                              "function": {"name": name, "arguments": ""}}]}))
            out += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                    for piece in pieces(args)]
        out.append(chunk({}, finish))
        out.append(chunk(None, usage={"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366}))
        return out

    def calls_tool(self, body):
        """With `tool_then_answer`, whether this request gets a tool call
        (it offers tools, and its last message is not a tool's result)."""
        return (self.tool_then_answer and bool(body.get("tools"))
                and body["messages"][-1]["role"] != "tool")

    def tool_call(self, body):
        """A whole call of `tool_name` (or the first tool) with `tool_input`."""
        name = self.tool_name or body["tools"][0]["function"]["name"]
        return {"id": "call_mock1", "type": "function",
                "function": {"name": name, "arguments": json.dumps(self.tool_input, ensure_ascii=False)}}

    tool_name = None
    tool_input = {"city": "Oslo", "days": 3, "note": "smørrebrød ✓"}
    # A number of events after which a stream is cut (the upstream hangs up).
    cut_after = None
    # An agent's script: call a tool (streamed or not) until a tool result
    # is the last message, then answer with text. Off: a stream calls a tool
    # whenever tools are offered, a whole answer never does.
    tool_then_answer = False

    def close(self):
        self.server.shutdown()


STREAM_TEXT = ["I'll", " look", " that up", " — 日本 ✓."]


def pieces(text, size=7):
    """`text` cut in pieces of `size` characters (so a JSON token, or a
    multi-byte character's neighbours, are split across events)."""
    return [text[i:i + size] for i in range(0, len(text), size)]


def send_sse(handler, events):
    """Writes `(event name, data)` pairs as a server-sent event stream, one
    flush per event; a gateway that hung up early ends it."""
    handler.send_response(200)
    handler.send_header("content-type", "text/event-stream")
    handler.end_headers()
    try:
        for name, data in events:
            handler.wfile.write(((f"event: {name}\n" if name else "") + f"data: {data}\n\n").encode())
            handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass


def send_json(handler, value, status=200):
    data = json.dumps(value).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def user_text(body):
    """Every user text of an Anthropic Messages body, joined."""
    out = []
    for m in body["messages"]:
        if m["role"] != "user":
            continue
        if isinstance(m["content"], str):
            out.append(m["content"])
        else:
            out += [b["text"] for b in m["content"] if b.get("type") == "text"]
    return " | ".join(out)


# The fields Anthropic's count_tokens accepts.
COUNT_FIELDS = {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
                "context_management", "output_config", "output_format"}


def count_key(value, key):
    """How many objects in `value` (nested) have `key`."""
    if isinstance(value, dict):
        return (key in value) + sum(count_key(v, key) for v in value.values())
    if isinstance(value, list):
        return sum(count_key(v, key) for v in value)
    return 0


class MockAnthropic:
    """An Anthropic Messages API server that reports what it received: a
    `message` as JSON, or with `stream: true` the event sequence Anthropic
    sends (ping, a thinking block closed by its signature, optionally a
    redacted_thinking block, text, and when
    the request has tools a tool_use block whose input arrives as several
    input_json_delta pieces); `/v1/messages/count_tokens` answers
    `count_tokens`. Like Anthropic, it refuses more than four cache_control
    breakpoints."""

    tool_name = None
    tool_input = {"city": "Oslo", "days": 3, "note": "smørrebrød ✓"}
    count_tokens = 4321
    # An `error` event sent after `cut_after` events, in place of the rest, when set.
    error_event = None
    # A redacted_thinking block's data, streamed after the thinking block when set.
    redacted = None
    # (status, body) to answer every request with, when set.
    fail_with = None
    # A number of events after which a stream is cut (the upstream hangs up).
    cut_after = None
    signature = "EqQBCkYIARgCIkBsig-mock-signature=="

    def __init__(self):
        self.received = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.received.append({"path": self.path, "headers": self.headers, "body": body})
                hints = count_key(body, "cache_control")
                if outer.fail_with is not None:
                    send_json(self, outer.fail_with[1], status=outer.fail_with[0])
                elif hints > 4:
                    # As Anthropic: at most four cache breakpoints a request.
                    send_json(self, {"type": "error", "error": {
                        "type": "invalid_request_error",
                        "message": f"A maximum of 4 blocks with cache_control may be provided. Found {hints}."}},
                        status=400)
                elif self.path.endswith("/v1/messages/count_tokens"):
                    extra = sorted(set(body) - COUNT_FIELDS)
                    if extra:
                        # As Anthropic: the count takes no turn settings.
                        send_json(self, {"type": "error", "error": {
                            "type": "invalid_request_error",
                            "message": f"{extra[0]}: Extra inputs are not permitted"}}, status=400)
                    else:
                        send_json(self, {"input_tokens": outer.count_tokens})
                elif body.get("stream"):
                    events = [(e["type"], json.dumps(e, ensure_ascii=False)) for e in outer.events(body)]
                    if outer.error_event is not None:
                        # The upstream's own error event, in place of the rest.
                        events = events[:outer.cut_after] + [("error", json.dumps(outer.error_event))]
                    send_sse(self, events[:outer.cut_after] if outer.error_event is None else events)
                else:
                    send_json(self, outer.message(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def message(self, body):
        return {
            "id": "msg_mock_whole", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": "saw: " + user_text(body)}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 4,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 20},
        }

    def events(self, body):
        def delta(index, d):
            return {"type": "content_block_delta", "index": index, "delta": d}
        out = [
            {"type": "message_start", "message": {
                "id": "msg_mock_stream", "type": "message", "role": "assistant", "model": body["model"],
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 1200, "output_tokens": 1,
                          "cache_creation_input_tokens": 300, "cache_read_input_tokens": 9000}}},
            {"type": "ping"},
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
            delta(0, {"type": "thinking_delta", "thinking": "The user wants"}),
            delta(0, {"type": "thinking_delta", "thinking": " a lookup."}),
            delta(0, {"type": "signature_delta", "signature": self.signature}),
            {"type": "content_block_stop", "index": 0},
        ]
        index = 1
        if self.redacted is not None:
            out += [{"type": "content_block_start", "index": index,
                     "content_block": {"type": "redacted_thinking", "data": self.redacted}},
                    {"type": "content_block_stop", "index": index}]
            index += 1
        out.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
        out += [delta(index, {"type": "text_delta", "text": p}) for p in STREAM_TEXT]
        out.append({"type": "content_block_stop", "index": index})
        index += 1
        stop = "end_turn"
        if body.get("tools"):
            stop = "tool_use"
            name = self.tool_name or body["tools"][0]["name"]
            out.append({"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": "toolu_mock1", "name": name, "input": {}}})
            # Anthropic's first input_json_delta is often empty.
            out.append(delta(index, {"type": "input_json_delta", "partial_json": ""}))
            out += [delta(index, {"type": "input_json_delta", "partial_json": p})
                    for p in pieces(json.dumps(self.tool_input, ensure_ascii=False))]
            out.append({"type": "content_block_stop", "index": index})
        out += [
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
             "usage": {"output_tokens": 87}},
            {"type": "message_stop"},
        ]
        return out

    def close(self):
        self.server.shutdown()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `ctxgate serve` child process on the embedded store."""

    def __init__(self, binary, env):
        self.binary = binary
        self.env = env
        self.log = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen([binary, "serve"], env=env, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()
        if not self.ready.wait(timeout=60):
            self.proc.kill()
            raise RuntimeError("ctxgate serve did not start: " + "".join(self.log))

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line)
            if "ctxgate listening" in line:
                self.ready.set()

    def cli(self, *args):
        out = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, check=True)
        return out.stdout

    def create_key(self, tenant, *scopes):
        args = ["keys", "create", "--tenant", tenant, "--name", "pytest"]
        for s in scopes:
            args += ["--scope", s]
        return self.cli(*args).strip().splitlines()[-1]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        # The log is complete once the reader has seen the pipe close.
        self.reader.join(timeout=30)


@pytest.fixture
def upstream():
    mock = MockOpenAI()
    yield mock
    mock.close()


@pytest.fixture
def server(upstream, tmp_path):
    binary = os.environ.get("CTXGATE_BIN")
    if not binary:
        raise RuntimeError("CTXGATE_BIN must name the ctxgate binary (scripts/test.sh sets it)")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CTXGATE_STORE": "embedded",
        "CTXGATE_DATA_DIR": str(tmp_path / "data"),
        "CTXGATE_LISTEN": f"127.0.0.1:{port}",
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "OPENAI_API_KEY": "sk-upstream-secret-for-tests",
        "RUST_LOG": "debug",
    }
    srv = Server(binary, env)
    srv.base_url = f"http://127.0.0.1:{port}/v1"
    yield srv
    srv.stop()


@pytest.fixture
def anthropic_upstream():
    mock = MockAnthropic()
    yield mock
    mock.close()


@pytest.fixture
def both_server(upstream, anthropic_upstream, tmp_path):
    """`ctxgate serve` with two upstreams: `upstream` (OpenAI's wire, for
    `openai/...` models) and `anthropic_upstream` (for `anthropic/...`);
    `origin` is the server's root, as Anthropic's SDK takes it."""
    port = free_port()
    # Coding agents send Anthropic's bare model ids: an alias routes one.
    config = tmp_path / "ctxgate.toml"
    # `agent` falls back across providers; one attempt per model keeps it quick.
    config.write_text('[retry]\nattempts = 1\n[aliases]\n"claude-sonnet-5-5" = "anthropic/claude-sonnet-5-5"\n'
                      'agent = ["anthropic/claude-sonnet-5-5", "openai/gpt-4o-mini"]\n')
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CTXGATE_STORE": "embedded",
        "CTXGATE_DATA_DIR": str(tmp_path / "data"),
        "CTXGATE_CONFIG": str(config),
        "CTXGATE_LISTEN": f"127.0.0.1:{port}",
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "OPENAI_API_KEY": "sk-upstream-secret-for-tests",
        "ANTHROPIC_BASE_URL": anthropic_upstream.url,
        "ANTHROPIC_API_KEY": "sk-ant-upstream-secret-for-tests",
        "RUST_LOG": "info",
    }
    srv = Server(os.environ["CTXGATE_BIN"], env)
    srv.origin = f"http://127.0.0.1:{port}"
    srv.base_url = srv.origin + "/v1"
    yield srv
    srv.stop()


class CrmProcess:
    """`server.py` as a child process; `url` is read from its `listening on` line."""

    def __init__(self, mode, token=None, extra=()):
        args = [sys.executable, str(SERVER), "--host", "127.0.0.1", "--port", "0", "--mode", mode, *extra]
        if token is not None:
            args += ["--token", token]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        # Blocks until the line arrives, or until the process exits (EOF: an empty line).
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server.py did not start: {line!r} {''.join(self.stderr)}")
        self.url = line.removeprefix("listening on ").strip()

    def stop(self):
        self.proc.kill()
        self.proc.wait()
