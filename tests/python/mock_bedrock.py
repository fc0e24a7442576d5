"""A mock Amazon Bedrock Runtime endpoint on loopback: Converse and ConverseStream.

It speaks the real wire: JSON for `POST /model/{modelId}/converse`, and for
`POST /model/{modelId}/converse-stream` the binary AWS event stream (prelude, headers,
payload, both CRC32s), encoded here from the specification. Every request must be signed
with SigV4 for the credentials and region it was started with (checked by recomputing the
signature with botocore's signer over the request as received), or, when started with
`--api-key`, carry that Bedrock API key as a bearer instead; anything else is refused with
a 403 as AWS refuses it.

What it answers is chosen by the model id, so that tests need no control calls:
`throttled`, `not-ready`, `denied`, `missing`, `invalid`, `timeout`, `internal`,
`unavailable`, `model-error` give that error; `stream-error` starts a stream then sends a
`modelStreamErrorException` frame. Any other model answers: a `toolUse` of the first tool
when the request has tools and ends with a user's text, a text quoting the first tool
result when it ends with tool results, else `bedrock echo: <last user text>`.

Usage counts a token per 4 bytes of the serialised prompt; `cachePoint` blocks are served
by a prompt cache that writes each cache point's prefix on first sight and reads the
longest known prefix found by looking back up to 20 blocks from a cache point, as
Anthropic's cache (and Bedrock's for Claude) does.

`GET /_mock/requests` lists the requests received (path, headers with the signature left
out, parsed body); `DELETE /_mock/requests` clears the list.

Run: python mock_bedrock.py --host 127.0.0.1 --port 0 --region us-east-1
     --access-key AKIDCTXGATETEST --secret-key ctxgate-test-secret [--api-key TOKEN]
It prints its base URL as its first line on stdout.
"""

import argparse
import datetime
import hashlib
import hmac
import json
import re
import struct
import sys
import threading
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# The account id in the access-denied message: a gateway must never show it.
ACCOUNT_ID = "123456789012"
# How far x-amz-date may be from the server's clock, as AWS allows.
MAX_SKEW = datetime.timedelta(minutes=5)
AMZ_DATE = "%Y%m%dT%H%M%SZ"
AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
CORAL = "http://internal.amazon.com/coral/com.amazon.bedrock/"

# Model-id fragments that answer with an error: (type, status, message).
ERRORS = [
    ("throttled", "ThrottlingException", 429, "Too many requests, please wait before trying again."),
    ("not-ready", "ModelNotReadyException", 429, "Model is not ready to serve inference requests."),
    ("denied", "AccessDeniedException", 403,
     "User: arn:aws:sts::" + ACCOUNT_ID + ":assumed-role/ctxgate-chat/ctxgate is not authorized "
     "to perform: bedrock:InvokeModel on resource: arn:aws:bedrock:{region}::foundation-model/{model} "
     "because no identity-based policy allows the bedrock:InvokeModel action"),
    ("missing", "ResourceNotFoundException", 404, "Model not found: the provided model identifier is invalid."),
    ("invalid", "ValidationException", 400,
     "1 validation error detected: Value at 'inferenceConfig.topP' failed to satisfy constraint: "
     "Member must have value less than or equal to 1"),
    ("timeout", "ModelTimeoutException", 408, "Model has timed out in processing the request."),
    ("internal", "InternalServerException", 500, "The server encountered an internal error."),
    ("unavailable", "ServiceUnavailableException", 503, "Service unavailable, try again later."),
    ("model-error", "ModelErrorException", 424, "The model returned an error."),
]


class Refused(Exception):
    """A request answered with an AWS error instead of a model's answer."""

    def __init__(self, status, kind, message, coral=CORAL):
        super().__init__(message)
        self.status, self.kind, self.message, self.coral = status, kind, message, coral


def auth_error(kind, message):
    return Refused(403, kind, message, "http://internal.amazon.com/coral/com.amazon.coral.service/")


# ---------------------------------------------------------------- the event stream

def _header(name, value):
    """One event-stream header of type 7 (string): name length, name, type, value length, value."""
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + struct.pack("!BH", 7, len(v)) + v


def encode_message(headers, payload):
    """One event-stream message: total and headers lengths, the prelude's CRC32, the
    headers, the payload, and the CRC32 of all that comes before it."""
    head = b"".join(_header(k, v) for k, v in headers)
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack("!II", total, len(head))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack("!I", zlib.crc32(body))


def event_frame(event_type, members):
    """An `event` message carrying one ConverseStream event's JSON members."""
    return encode_message(
        [(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")],
        json.dumps(members, separators=(",", ":")).encode(),
    )


def exception_frame(exception_type, members):
    """An `exception` message (the stream's error, after a 200)."""
    return encode_message(
        [(":exception-type", exception_type), (":content-type", "application/json"),
         (":message-type", "exception")],
        json.dumps(members, separators=(",", ":")).encode(),
    )


# ---------------------------------------------------------------- the prompt cache

def tokens(text):
    """Tokens of `text`, as the mocks count them: one per four bytes."""
    return -(-len(text.encode()) // 4)


def units(body):
    """The request's blocks in the order a cache reads them (tools, system, messages), each
    as (text, is a cache point). A cache point marks the end of the prefix before it."""
    out = []

    def walk(place, blocks):
        for j, block in enumerate(blocks or []):
            if isinstance(block, dict) and "cachePoint" in block:
                out.append((None, True))
            else:
                out.append((f"{place}[{j}]=" + json.dumps(block, sort_keys=True, separators=(",", ":")), False))

    walk("tools", (body.get("toolConfig") or {}).get("tools"))
    walk("system", body.get("system"))
    for i, message in enumerate(body.get("messages") or []):
        walk(f"messages[{i}]:{message.get('role')}", message.get("content"))
    return out


class PromptCache:
    """Prefixes written at cache points; a later request reads the longest one it finds
    looking back up to 20 blocks from each of its cache points."""

    def __init__(self):
        self.entries = set()
        self.lock = threading.Lock()

    def serve(self, model, body):
        """(total input tokens, read, written) for one request."""
        blocks = units(body)
        hashes, upto, marks = [], [0], []
        h = hashlib.sha256(model.encode())
        for text, point in blocks:
            if point:
                if hashes:
                    marks.append(len(hashes) - 1)
                continue
            h.update(text.encode() + b"\0")
            hashes.append(h.copy().hexdigest())
            upto.append(upto[-1] + tokens(text))
        with self.lock:
            read_end = 0
            for b in marks:
                for k in range(b, max(b - 20, -1), -1):
                    if hashes[k] in self.entries:
                        read_end = max(read_end, k + 1)
                        break
            written = 0
            if marks and marks[-1] + 1 > read_end:
                written = upto[marks[-1] + 1] - upto[read_end]
            for b in marks:
                self.entries.add(hashes[b])
        return upto[-1], upto[read_end], written


# ---------------------------------------------------------------- the model

def validate(body):
    """The checks Bedrock makes that a translation can get wrong, with its messages."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Refused(400, "ValidationException", "A conversation must start with a user message. Try again with a conversation that starts with a user message.")
    if messages[0].get("role") != "user":
        raise Refused(400, "ValidationException", "A conversation must start with a user message. Try again with a conversation that starts with a user message.")
    uses_tools = False
    for i, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            raise Refused(400, "ValidationException", f"1 validation error detected: Value at 'messages.{i + 1}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]")
        if i and messages[i - 1].get("role") == message.get("role"):
            raise Refused(400, "ValidationException", "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.")
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise Refused(400, "ValidationException", f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again.")
        for j, block in enumerate(content):
            if "text" in block and not str(block["text"]).strip():
                raise Refused(400, "ValidationException", f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again.")
            if "toolUse" in block or "toolResult" in block:
                uses_tools = True
        wanted = [b["toolUse"]["toolUseId"] for b in content if "toolUse" in b]
        if wanted:
            following = messages[i + 1]["content"] if i + 1 < len(messages) else None
            if following is not None:
                given = {b["toolResult"]["toolUseId"] for b in following if "toolResult" in b}
                missing = [w for w in wanted if w not in given]
                if missing:
                    raise Refused(400, "ValidationException", f"Expected toolResult blocks at messages.{i + 1}.content for the following Ids: {', '.join(missing)}")
    if uses_tools and not (body.get("toolConfig") or {}).get("tools"):
        raise Refused(400, "ValidationException", "The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise Refused(400, "ValidationException", f"1 validation error detected: Value '{max_tokens}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1")


def sample_input(tool):
    """A small input for a tool, from its schema's required (else first) properties."""
    schema = ((tool.get("toolSpec") or {}).get("inputSchema") or {}).get("json") or {}
    props = schema.get("properties") or {}
    names = schema.get("required") or list(props)[:1]
    values = {"string": "42", "integer": 42, "number": 4.2, "boolean": True, "array": [], "object": {}}
    return {n: values.get((props.get(n) or {}).get("type"), "42") for n in names}


def answer(body):
    """The answer's content blocks and stop reason, before max tokens and stop sequences."""
    last = body["messages"][-1]
    results = [b["toolResult"] for b in last["content"] if "toolResult" in b]
    if last["role"] == "user" and results:
        first = results[0].get("content") or []
        text = " ".join(c["text"] if "text" in c else json.dumps(c.get("json"), sort_keys=True)
                        for c in first if "text" in c or "json" in c)
        return [{"text": f"the tool said: {text}"}], "end_turn"
    tools = [t for t in (body.get("toolConfig") or {}).get("tools") or [] if "toolSpec" in t]
    user_text = " ".join(b["text"] for b in last["content"] if "text" in b)
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
    if tools and user_text and last["role"] == "user":
        tool = tools[0]
        if "tool" in choice:
            tool = next((t for t in tools if t["toolSpec"]["name"] == choice["tool"]["name"]), tool)
        return [{"toolUse": {"toolUseId": "tooluse_mock" + hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()[:8],
                             "name": tool["toolSpec"]["name"], "input": sample_input(tool)}}], "tool_use"
    return [{"text": f"bedrock echo: {user_text}"}], "end_turn"


def limit(content, reason, config):
    """Applies stop sequences and maxTokens to a text answer (a token is 4 bytes)."""
    if "text" not in content[0]:
        return content, reason
    text = content[0]["text"]
    for stop in config.get("stopSequences") or []:
        if stop and stop in text:
            text, reason = text[: text.index(stop)], "stop_sequence"
    max_tokens = config.get("maxTokens")
    if max_tokens is not None and tokens(text) > max_tokens:
        text, reason = text.encode()[: max_tokens * 4].decode(errors="ignore"), "max_tokens"
    return [{"text": text}], reason


def pieces(text, n=3):
    """`text` in `n` pieces cut at fixed points (mid-word, mid-JSON)."""
    if len(text) < n:
        return [text]
    step = -(-len(text) // n)
    return [text[i:i + step] for i in range(0, len(text), step)]


# ---------------------------------------------------------------- the server

class Mock:
    def __init__(self, args):
        self.args = args
        self.requests = []
        self.lock = threading.Lock()
        self.cache = PromptCache()

    def check_auth(self, method, raw_path, headers, body):
        """Refuses a request that is not signed for these credentials (or, with an API key,
        that does not carry it as a bearer); returns how it was authenticated."""
        auth = headers.get("authorization") or ""
        if self.args.api_key is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), self.args.api_key):
                raise auth_error("UnrecognizedClientException", "The security token included in the request is invalid.")
            return "bearer"
        if not auth:
            raise Refused(403, "MissingAuthenticationTokenException", "Missing Authentication Token",
                          "http://internal.amazon.com/coral/com.amazon.coral.service/")
        m = AUTH_RE.match(auth.strip())
        if not m:
            raise auth_error("UnrecognizedClientException", "The security token included in the request is invalid.")
        if m["key"] != self.args.access_key:
            raise auth_error("UnrecognizedClientException", "The security token included in the request is invalid.")
        if m["service"] != "bedrock":
            raise auth_error("InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'. ")
        if m["region"] != self.args.region:
            raise auth_error("InvalidSignatureException", f"Credential should be scoped to a valid region, not '{m['region']}'. ")
        amz_date = headers.get("x-amz-date") or ""
        try:
            when = datetime.datetime.strptime(amz_date, AMZ_DATE)
        except ValueError:
            raise auth_error("InvalidSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        if abs(now - when) > MAX_SKEW:
            raise auth_error("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than {(now - MAX_SKEW).strftime(AMZ_DATE)} ({now.strftime(AMZ_DATE)} - 5 min.)")
        if m["date"] != amz_date[:8]:
            raise auth_error("InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.")
        signed = m["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            raise auth_error("InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed.")
        sha = headers.get("x-amz-content-sha256")
        if sha is not None and sha != hashlib.sha256(body).hexdigest():
            raise auth_error("InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match what was computed.")
        missing = [h for h in signed if headers.get(h) is None]
        if missing:
            raise auth_error("InvalidSignatureException", f"Signed header {missing[0]} is missing.")
        # The request as received, only its signed headers, recomputed by botocore.
        request = AWSRequest(method=method, url=f"http://{headers['host']}{raw_path}", data=body,
                             headers={h: ",".join(headers.get_all(h)) for h in signed})
        request.context["timestamp"] = amz_date
        signer = ExactSigner(Credentials(self.args.access_key, self.args.secret_key), "bedrock", self.args.region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, m["signature"]):
            raise auth_error("InvalidSignatureException",
                             "The request signature we calculated does not match the signature you provided. "
                             "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
        return "sigv4"

    def record(self, method, path, headers, body, auth):
        shown = {}
        for name in headers.keys():
            value = ",".join(headers.get_all(name))
            if name.lower() == "authorization" and auth == "sigv4":
                value = value.split(", Signature=")[0]
            shown[name.lower()] = value
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode(errors="replace")
        with self.lock:
            self.requests.append({"method": method, "path": path, "auth": auth, "headers": shown, "body": parsed})

    def usage(self, model, body, output):
        total, read, written = self.cache.serve(model, body)
        usage = {"inputTokens": total - read - written, "outputTokens": output,
                 "totalTokens": total + output}
        if any(point for _, point in units(body)):
            usage["cacheReadInputTokens"] = read
            usage["cacheWriteInputTokens"] = written
        return usage


class ExactSigner(SigV4Auth):
    """botocore's SigV4 over exactly the headers the client signed (the request is rebuilt
    with those only), none dropped or added."""

    def headers_to_sign(self, request):
        from botocore.awsrequest import HTTPHeaders
        out = HTTPHeaders()
        for name, value in request.headers.items():
            out[name.lower()] = value
        return out


def make_handler(mock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send_json(self, status, value, extra=()):
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def send_refused(self, r):
            self.send_json(r.status, {"message": r.message}, [("x-amzn-ErrorType", f"{r.kind}:{r.coral}")])

        def read_body(self):
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self):
            if self.path == "/_mock/requests":
                with mock.lock:
                    self.send_json(200, list(mock.requests))
            else:
                self.send_json(404, {"message": "no such path"})

        def do_DELETE(self):
            if self.path == "/_mock/requests":
                with mock.lock:
                    mock.requests.clear()
                self.send_json(200, [])
            else:
                self.send_json(404, {"message": "no such path"})

        def do_POST(self):
            try:
                self.post()
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as e:  # a bug of the mock: a 500 and a traceback on stderr, not a hang
                import traceback
                traceback.print_exc()
                self.send_refused(Refused(500, "InternalServerException", f"mock_bedrock: {e!r}"))

        def post(self):
            body = self.read_body()
            m = re.fullmatch(r"/model/([^/]+)/(converse|converse-stream)", self.path)
            if not m:
                self.send_refused(Refused(404, "UnknownOperationException", "Unknown operation"))
                return
            try:
                auth = mock.check_auth("POST", self.path, self.headers, body)
            except Refused as r:
                mock.record("POST", self.path, self.headers, body, "refused")
                self.send_refused(r)
                return
            mock.record("POST", self.path, self.headers, body, auth)
            model = urllib.parse.unquote(m[1])
            stream = m[2] == "converse-stream"
            try:
                try:
                    request = json.loads(body)
                except ValueError:
                    raise Refused(400, "SerializationException", "Unexpected content: the body is not JSON.")
                if not isinstance(request, dict):
                    raise Refused(400, "SerializationException", "Unexpected content: the body is not a JSON object.")
                for fragment, kind, status, message in ERRORS:
                    if fragment in model:
                        raise Refused(status, kind, message.format(region=mock.args.region, model=model))
                validate(request)
                content, reason = answer(request)
                content, reason = limit(content, reason, request.get("inferenceConfig") or {})
                out_text = content[0].get("text") or json.dumps(content[0]["toolUse"]["input"])
                usage = mock.usage(model, request, tokens(out_text))
            except Refused as r:
                self.send_refused(r)
                return
            if not stream:
                self.send_json(200, {
                    "output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": reason, "usage": usage, "metrics": {"latencyMs": 1},
                })
                return
            self.stream(model, content, reason, usage)

        def stream(self, model, content, reason, usage):
            self.send_response(200)
            self.send_header("content-type", "application/vnd.amazon.eventstream")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.chunk(event_frame("messageStart", {"role": "assistant"}))
            block = content[0]
            if "toolUse" in block:
                use = block["toolUse"]
                self.chunk(event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": {
                    "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
                for piece in pieces(json.dumps(use["input"], separators=(",", ":"))):
                    self.chunk(event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                                                 "delta": {"toolUse": {"input": piece}}}))
            else:
                for i, piece in enumerate(pieces(block["text"])):
                    self.chunk(event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                                                 "delta": {"text": piece}}))
                    if i == 0 and "stream-error" in model:
                        self.chunk(exception_frame("modelStreamErrorException", {
                            "message": "The model stream failed.", "originalStatusCode": 500,
                            "originalMessage": "upstream model error"}))
                        self.end_chunks()
                        return
            self.chunk(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
            self.chunk(event_frame("messageStop", {"stopReason": reason}))
            self.chunk(event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
            self.end_chunks()

        def chunk(self, data):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def end_chunks(self):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key", default="AKIDCTXGATETEST")
    parser.add_argument("--secret-key", default="ctxgate-test-secret")
    parser.add_argument("--api-key", default=None, help="accept this bearer instead of SigV4")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Mock(args)))
    server.daemon_threads = True
    print(f"http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
