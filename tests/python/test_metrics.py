"""The local server's `GET /metrics` read by the official Prometheus Python
client's OpenMetrics parser (strict: a malformed exposition fails to parse)
after a few turns: a whole answer, a stream, a client error, a model the
configuration does not name. The metrics add up to what the turns did, the
model label stays bounded, and no key, tenant or content is in the text."""

import json
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def call(server, method, path, key=None, body=None):
    url = server.base_url.removesuffix("/v1") + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if key:
        req.add_header("authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def samples(text):
    """Every sample of the exposition, as (name, labels, value)."""
    return [(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def total(found, name, **labels):
    return sum(v for n, l, v in found if n == name and all(l.get(k) == w for k, w in labels.items()))


def test_metrics_parse_and_add_up(server):
    key = server.create_key("tenant-metrics", "chat")
    admin = server.create_key("tenant-metrics", "admin")
    turn = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "secret swordfish-42"}]}
    assert call(server, "POST", "/v1/chat/completions", key, turn)[0] == 200
    status, _, streamed = call(server, "POST", "/v1/chat/completions", key, {**turn, "stream": True})
    assert status == 200 and "[DONE]" in streamed
    assert call(server, "POST", "/v1/chat/completions", key, {"model": "openai/gpt-4o-mini"})[0] == 400
    unknown = {"model": "openai/made-up-by-a-client", "messages": [{"role": "user", "content": "hi"}]}
    assert call(server, "POST", "/v1/chat/completions", key, unknown)[0] == 200

    # The admin scope only.
    assert call(server, "GET", "/metrics")[0] == 401
    assert call(server, "GET", "/metrics", key)[0] == 403
    status, headers, text = call(server, "GET", "/metrics", admin)
    assert status == 200, text
    assert headers["content-type"].startswith("application/openmetrics-text")
    found = samples(text)

    chat = {"function": "local", "door": "chat"}
    assert total(found, "ctxgate_requests_total", **chat) == 4
    assert total(found, "ctxgate_errors_total", **chat, **{"class": "client"}) == 1
    assert total(found, "ctxgate_errors_total", **chat, **{"class": "upstream"}) == 0
    model = {"provider": "openai", "model": "openai/gpt-4o-mini"}
    # The mock's whole answer reports 10 prompt tokens a message; its stream 321 and 45.
    assert total(found, "ctxgate_tokens_total", **chat, **model, kind="input") == 10 + 321
    assert total(found, "ctxgate_tokens_total", **chat, **model, kind="output") == 3 + 45
    assert total(found, "ctxgate_requests_total", **chat, provider="openai", model="other") == 1
    assert total(found, "ctxgate_time_to_first_token_seconds_count", **chat) == 1
    assert total(found, "ctxgate_request_duration_seconds_count", **chat) == 4
    assert total(found, "ctxgate_upstream_duration_seconds_count", **chat) == 3
    assert total(found, "ctxgate_cold_starts_total") == 1
    models = {l.get("model") for _, l, _ in found if "model" in l}
    assert models <= {"", "openai/gpt-4o-mini", "other"}, models
    for leak in [key, admin, "tenant-metrics", "swordfish", "made-up-by-a-client"]:
        assert leak not in text, leak
