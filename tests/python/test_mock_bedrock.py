"""The mock Bedrock Runtime endpoint (mock_bedrock.py) driven by the official AWS SDK for
Python: if boto3 signs a request the mock accepts, and reads the mock's event stream, the
mock's SigV4 check and its binary framing are the real ones."""

import datetime
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mock_bedrock  # noqa: E402

MOCK = Path(__file__).resolve().parent / "mock_bedrock.py"
REGION = "us-east-1"
ACCESS_KEY = "AKIDCTXGATETEST"
SECRET_KEY = "ctxgate-test-secret"
API_KEY = "bedrock-api-key-test"
MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"


class Running:
    def __init__(self, *extra):
        self.process = subprocess.Popen(
            [sys.executable, str(MOCK), "--host", "127.0.0.1", "--port", "0", "--region", REGION,
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, *extra],
            stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def requests(self):
        with urllib.request.urlopen(self.url + "/_mock/requests") as r:
            return json.load(r)

    def clear(self):
        urllib.request.urlopen(urllib.request.Request(self.url + "/_mock/requests", method="DELETE")).read()

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture
def mock():
    m = Running()
    yield m
    m.stop()


@pytest.fixture
def keyed_mock():
    m = Running("--api-key", API_KEY)
    yield m
    m.stop()


def client(url, secret=SECRET_KEY, region=REGION, key=ACCESS_KEY):
    return boto3.client(
        "bedrock-runtime", endpoint_url=url, region_name=region, aws_access_key_id=key,
        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}))


def user(text):
    return [{"role": "user", "content": [{"text": text}]}]


def error_code(info):
    return info.value.response["Error"]["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]


# ---------------------------------------------------------------- the framing

def test_frames_parse_with_botocore_and_a_bad_crc_is_caught():
    frame = mock_bedrock.event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hé"}})
    buffer = EventStreamBuffer()
    buffer.add_data(frame + mock_bedrock.exception_frame("throttlingException", {"message": "slow"}))
    first, second = list(buffer)
    assert first.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                             ":message-type": "event"}
    assert json.loads(first.payload) == {"contentBlockIndex": 0, "delta": {"text": "hé"}}
    assert second.headers[":message-type"] == "exception"
    assert second.headers[":exception-type"] == "throttlingException"
    # One flipped payload byte: the message CRC no longer matches.
    broken = bytearray(frame)
    broken[-6] ^= 1
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(broken))
    with pytest.raises(ChecksumMismatch):
        list(buffer)
    # One flipped length byte: the prelude CRC no longer matches.
    broken = bytearray(frame)
    broken[7] ^= 1
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(broken))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


# ---------------------------------------------------------------- answers

def test_converse_answers_a_signed_request(mock):
    out = client(mock.url).converse(
        modelId=MODEL, messages=user("hello there"), system=[{"text": "be brief"}],
        inferenceConfig={"maxTokens": 100, "temperature": 0.5, "stopSequences": ["###"]})
    assert out["output"]["message"] == {"role": "assistant", "content": [{"text": "bedrock echo: hello there"}]}
    assert out["stopReason"] == "end_turn"
    usage = out["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] == mock_bedrock.tokens("bedrock echo: hello there")
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert "cacheReadInputTokens" not in usage
    [seen] = mock.requests()
    # The model id's colon arrives percent-encoded in the path.
    assert seen["path"] == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert seen["auth"] == "sigv4"
    assert "Signature=" not in seen["headers"]["authorization"]
    assert seen["headers"]["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert seen["body"]["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["###"]}
    mock.clear()
    assert mock.requests() == []


def test_converse_stream_is_read_by_boto3(mock):
    out = client(mock.url).converse_stream(modelId=MODEL, messages=user("stream me please"))
    events = list(out["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert len(deltas) > 1
    assert "".join(deltas) == "bedrock echo: stream me please"
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == mock_bedrock.tokens("bedrock echo: stream me please")
    assert mock.requests()[0]["path"].endswith("/converse-stream")


TOOLS = {"tools": [{"toolSpec": {"name": "crm__get_customer", "description": "A customer",
                                 "inputSchema": {"json": {"type": "object", "properties": {
                                     "id": {"type": "string"}}, "required": ["id"]}}}}]}


def test_tool_use_streamed_in_pieces_then_an_answer_from_the_result(mock):
    bedrock = client(mock.url)
    events = list(bedrock.converse_stream(modelId=MODEL, messages=user("who is 42?"), toolConfig=TOOLS)["stream"])
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    use = start["start"]["toolUse"]
    assert use["name"] == "crm__get_customer"
    pieces = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e]
    assert len(pieces) > 1 and not any(p == "" for p in pieces)
    assert json.loads("".join(pieces)) == {"id": "42"}
    assert next(e["messageStop"] for e in events if "messageStop" in e)["stopReason"] == "tool_use"

    whole = bedrock.converse(modelId=MODEL, messages=user("who is 42?"), toolConfig=TOOLS)
    assert whole["stopReason"] == "tool_use"
    [block] = whole["output"]["message"]["content"]
    assert block["toolUse"]["input"] == {"id": "42"} and block["toolUse"]["toolUseId"] == use["toolUseId"]

    history = user("who is 42?") + [whole["output"]["message"], {"role": "user", "content": [{"toolResult": {
        "toolUseId": use["toolUseId"], "content": [{"text": "customer 42: Ada"}]}}]}]
    after = bedrock.converse(modelId=MODEL, messages=history, toolConfig=TOOLS)
    assert after["output"]["message"]["content"] == [{"text": "the tool said: customer 42: Ada"}]
    assert after["stopReason"] == "end_turn"


def test_max_tokens_and_stop_sequences_end_the_answer(mock):
    bedrock = client(mock.url)
    short = bedrock.converse(modelId=MODEL, messages=user("a long question"), inferenceConfig={"maxTokens": 2})
    assert short["stopReason"] == "max_tokens"
    assert short["output"]["message"]["content"] == [{"text": "bedrock "}]
    stopped = bedrock.converse(modelId=MODEL, messages=user("x STOP y"), inferenceConfig={"stopSequences": ["STOP"]})
    assert stopped["stopReason"] == "stop_sequence"
    assert stopped["output"]["message"]["content"] == [{"text": "bedrock echo: x "}]


def test_cache_points_write_then_read(mock):
    bedrock = client(mock.url)
    system = [{"text": "You are a careful assistant. " * 20}, {"cachePoint": {"type": "default"}}]
    first = bedrock.converse(modelId=MODEL, system=system, messages=user("one"))["usage"]
    assert first["cacheWriteInputTokens"] > 0 and first["cacheReadInputTokens"] == 0
    second = bedrock.converse(modelId=MODEL, system=system, messages=user("two"))["usage"]
    assert second["cacheReadInputTokens"] == first["cacheWriteInputTokens"]
    assert second["cacheWriteInputTokens"] == 0
    assert second["inputTokens"] < first["inputTokens"] + first["cacheWriteInputTokens"]

    # A conversation: the second turn's cache point sits further on, and reads what the
    # first wrote by looking back from it.
    turn1 = [{"role": "user", "content": [{"text": "first question " * 30}, {"cachePoint": {"type": "default"}}]}]
    u1 = bedrock.converse(modelId=MODEL, messages=turn1)["usage"]
    assert u1["cacheWriteInputTokens"] > 0
    turn2 = [turn1[0], {"role": "assistant", "content": [{"text": "an answer"}, {"cachePoint": {"type": "default"}}]},
             {"role": "user", "content": [{"text": "second question"}]}]
    u2 = bedrock.converse(modelId=MODEL, messages=turn2)["usage"]
    assert u2["cacheReadInputTokens"] == u1["cacheWriteInputTokens"]
    assert u2["cacheWriteInputTokens"] > 0
    # Another model has a cache of its own.
    other = bedrock.converse(modelId="amazon.nova-pro-v1:0", system=system, messages=user("one"))["usage"]
    assert other["cacheReadInputTokens"] == 0


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("model,code,status", [
    ("mock.throttled-v1", "ThrottlingException", 429),
    ("mock.not-ready-v1", "ModelNotReadyException", 429),
    ("mock.denied-v1", "AccessDeniedException", 403),
    ("mock.missing-v1", "ResourceNotFoundException", 404),
    ("mock.invalid-v1", "ValidationException", 400),
    ("mock.timeout-v1", "ModelTimeoutException", 408),
    ("mock.internal-v1", "InternalServerException", 500),
    ("mock.unavailable-v1", "ServiceUnavailableException", 503),
    ("mock.model-error-v1", "ModelErrorException", 424),
])
def test_error_models(mock, model, code, status):
    bedrock = client(mock.url)
    with pytest.raises(ClientError) as info:
        bedrock.converse(modelId=model, messages=user("hi"))
    assert error_code(info) == (code, status)
    with pytest.raises(ClientError) as info:
        bedrock.converse_stream(modelId=model, messages=user("hi"))
    assert error_code(info) == (code, status)
    if code == "AccessDeniedException":
        assert mock_bedrock.ACCOUNT_ID in info.value.response["Error"]["Message"]
    if code == "ValidationException":
        assert "inferenceConfig.topP" in info.value.response["Error"]["Message"]


def test_a_stream_error_frame_after_the_start(mock):
    out = client(mock.url).converse_stream(modelId="mock.stream-error-v1", messages=user("hi"))
    seen = []
    with pytest.raises(EventStreamError) as info:
        for event in out["stream"]:
            seen.append(event)
    assert info.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert [next(iter(e)) for e in seen] == ["messageStart", "contentBlockDelta"]


def test_bedrock_checks_like_bedrock(mock):
    bedrock = client(mock.url)
    with pytest.raises(ClientError) as info:
        bedrock.converse(modelId=MODEL, messages=user("a") + user("b"))
    assert error_code(info) == ("ValidationException", 400)
    assert "alternate" in info.value.response["Error"]["Message"]
    # boto3 refuses this one itself; signed by hand, the mock names the field.
    url = f"{mock.url}/model/{MODEL.replace(':', '%3A')}/converse"
    body = json.dumps({"messages": user("hi"), "inferenceConfig": {"maxTokens": 0}}).encode()
    status, _, out = raw(url, body, signed(url, body))
    assert status == 400 and "inferenceConfig.maxTokens" in json.loads(out)["message"]


# ---------------------------------------------------------------- authentication

def test_wrong_credentials_are_refused(mock):
    with pytest.raises(ClientError) as info:
        client(mock.url, secret="not-the-secret").converse(modelId=MODEL, messages=user("hi"))
    assert error_code(info) == ("InvalidSignatureException", 403)
    with pytest.raises(ClientError) as info:
        client(mock.url, key="AKIDSOMEONEELSE").converse(modelId=MODEL, messages=user("hi"))
    assert error_code(info) == ("UnrecognizedClientException", 403)
    with pytest.raises(ClientError) as info:
        client(mock.url, region="us-west-2").converse(modelId=MODEL, messages=user("hi"))
    assert error_code(info) == ("InvalidSignatureException", 403)
    assert "region" in info.value.response["Error"]["Message"]
    assert [r["auth"] for r in mock.requests()] == ["refused"] * 3


def raw(url, body, headers):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def signed(url, body, when=None, service="bedrock", region=REGION, secret=SECRET_KEY):
    """A request signed with botocore's SigV4 at `when` (now by default)."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
    stamp = (when or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = stamp
    request.headers["X-Amz-Date"] = stamp
    signer = SigV4Auth(Credentials(ACCESS_KEY, secret), service, region)
    signer._inject_signature_to_request(
        request, signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request))
    return dict(request.headers.items())


def test_stale_tampered_unsigned_and_wrong_service_are_refused(mock):
    url = f"{mock.url}/model/amazon.nova-pro-v1%3A0/converse"
    body = json.dumps({"messages": user("hi")}).encode()
    status, _, out = raw(url, body, signed(url, body))
    assert status == 200, out
    assert json.loads(out)["output"]["message"]["content"] == [{"text": "bedrock echo: hi"}]

    hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    status, headers, out = raw(url, body, signed(url, body, when=hour_ago))
    assert status == 403 and headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")
    assert "Signature expired" in json.loads(out)["message"]

    tampered = json.dumps({"messages": user("ho")}).encode()
    status, headers, _ = raw(url, tampered, signed(url, body))
    assert status == 403 and headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")

    headers = signed(url, body)
    headers["x-amz-content-sha256"] = hashlib.sha256(tampered).hexdigest()
    assert raw(url, body, headers)[0] == 403

    status, _, _ = raw(url, body, signed(url, body, service="bedrock-runtime"))
    assert status == 403
    status, headers, _ = raw(url, body, {"content-type": "application/json"})
    assert status == 403
    status, _, _ = raw(url, body, {"authorization": f"Bearer {API_KEY}"})
    assert status == 403


def test_bearer_api_key(keyed_mock):
    # boto3 sends a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK) over HTTPS only, and the
    # mock is plain http: the bearer is sent by hand.
    url = f"{keyed_mock.url}/model/{MODEL.replace(':', '%3A')}/converse"
    body = json.dumps({"messages": user("keyed")}).encode()
    status, _, out = raw(url, body, {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"})
    assert status == 200, out
    assert json.loads(out)["output"]["message"]["content"] == [{"text": "bedrock echo: keyed"}]
    [seen] = keyed_mock.requests()
    assert seen["auth"] == "bearer" and seen["headers"]["authorization"] == f"Bearer {API_KEY}"

    status, headers, _ = raw(url, body, {"content-type": "application/json", "authorization": "Bearer a-wrong-key"})
    assert status == 403 and headers["x-amzn-ErrorType"].startswith("UnrecognizedClientException:")
    assert raw(url, body, {"content-type": "application/json"})[0] == 403
    # With an API key configured, a SigV4 signature is not what it accepts.
    with pytest.raises(ClientError) as info:
        client(keyed_mock.url).converse(modelId=MODEL, messages=user("keyed"))
    assert error_code(info) == ("UnrecognizedClientException", 403)
