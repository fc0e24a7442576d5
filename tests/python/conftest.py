"""Fixtures: a mock OpenAI upstream and a real `ctxgate serve` process."""

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
                users = [m["content"] if isinstance(m["content"], str)
                         else " ".join(p.get("text", "") for p in m["content"])
                         for m in body["messages"] if m["role"] == "user"]
                reply = {
                    "id": "chatcmpl-mock",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "saw: " + " | ".join(users)}}],
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
