"""The example CRM MCP server (examples/crm/server.py) through the official `mcp` client, in both modes.

The server runs as a child process on a free loopback port; nothing leaves the machine.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import SERVER, CrmProcess

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


@pytest.fixture(params=["current", "legacy"])
def crm(request):
    server = CrmProcess(request.param)
    server.mode = request.param
    yield server
    server.stop()


@pytest.fixture
def crm_with_token():
    server = CrmProcess("current", token="s3cret-token")
    yield server
    server.stop()


class Recorder:
    """Every HTTP exchange of a client: method of the JSON-RPC body, request and response headers."""

    def __init__(self):
        self.exchanges = []

    async def on_response(self, response):
        request = response.request
        try:
            body = json.loads(request.content or b"null")
        except ValueError:
            body = None
        method = body.get("method") if isinstance(body, dict) else None
        self.exchanges.append({"method": method, "http": request.method, "request": request.headers,
                               "status": response.status_code, "response": response.headers})

    def client(self, headers=None):
        return httpx2.AsyncClient(headers=headers or {}, event_hooks={"response": [self.on_response]})


async def session(url, mode="auto", headers=None, recorder=None):
    recorder = recorder or Recorder()
    transport = streamable_http_client(url, http_client=recorder.client(headers))
    return Client(transport, mode=mode), recorder


def run(coro):
    return anyio.run(coro)


def test_tools_are_listed_with_descriptions_and_schemas(crm):
    async def go():
        client, _ = await session(crm.url)
        async with client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in run(go)}
    assert sorted(tools) == ["get_customer", "list_orders", "search_kb"]
    for tool in tools.values():
        assert tool.description
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema["type"] == "object"
    assert tools["get_customer"].input_schema["required"] == ["customer_id"]
    assert tools["list_orders"].input_schema["required"] == ["customer_id"]
    assert "status" in tools["list_orders"].input_schema["properties"]
    assert tools["search_kb"].input_schema["properties"]["limit"]["default"] == 3


def test_each_tool_answers_with_text_and_structured_content(crm):
    async def go():
        client, _ = await session(crm.url)
        async with client:
            return (
                await client.call_tool("get_customer", {"customer_id": "c-1001"}),
                await client.call_tool("list_orders", {"customer_id": "c-1001", "status": "shipped"}),
                await client.call_tool("list_orders", {"customer_id": "c-1003"}),
                await client.call_tool("search_kb", {"query": "refund for a return", "limit": 2}),
            )

    customer, shipped, none, kb = run(go)
    assert not customer.is_error
    assert customer.structured_content == {"customer_id": "c-1001", "name": "Ada Lovelace",
                                           "email": "ada@example.com", "tier": "platinum", "since": "2019-03-14"}
    assert customer.content[0].text == \
        "Ada Lovelace <ada@example.com>, platinum tier, customer since 2019-03-14 (id c-1001)"

    assert not shipped.is_error
    assert [o["order_id"] for o in shipped.structured_content["orders"]] == ["o-5002"]
    assert shipped.structured_content["status"] == "shipped"
    assert "o-5002" in shipped.content[0].text and "EUR 129.90" in shipped.content[0].text

    assert none.structured_content["orders"] == []
    assert none.content[0].text == "No orders for c-1003."

    # "refund" and "return" both begin words of kb-101 and kb-102 ("for" and "a" are stop words);
    # kb-105 has "return" alone.
    assert [a["article_id"] for a in kb.structured_content["articles"]] == ["kb-101", "kb-102"]
    assert kb.content[0].text.startswith("[kb-101] Returning an item:")


def test_search_ranking_is_deterministic(crm):
    async def go():
        client, _ = await session(crm.url)
        async with client:
            first = await client.call_tool("search_kb", {"query": "shipped order"})
            again = await client.call_tool("search_kb", {"query": "shipped order"})
            nothing = await client.call_tool("search_kb", {"query": "quantum"})
            stem = await client.call_tool("search_kb", {"query": "How do I cancel an order?", "limit": 1})
            return first, again, nothing, stem

    first, again, nothing, stem = run(go)
    # "cancel" finds "Cancelling"; "order" is everywhere, the rest are stop words.
    assert [(a["article_id"], a["score"]) for a in stem.structured_content["articles"]] == [("kb-105", 2)]
    ids = [a["article_id"] for a in first.structured_content["articles"]]
    assert ids == [a["article_id"] for a in again.structured_content["articles"]]
    assert len(ids) == 3
    scores = [a["score"] for a in first.structured_content["articles"]]
    assert scores == sorted(scores, reverse=True)
    assert nothing.structured_content["articles"] == []
    assert nothing.content[0].text == "No article matches 'quantum'."


def test_unknown_customer_is_an_error_result_naming_the_known_ones(crm):
    async def go():
        client, _ = await session(crm.url)
        async with client:
            return (
                await client.call_tool("get_customer", {"customer_id": "c-9999"}),
                await client.call_tool("list_orders", {"customer_id": "c-9999"}),
                await client.call_tool("list_orders", {"customer_id": "c-1001", "status": "lost"}),
            )

    customer, orders, status = run(go)
    for result in (customer, orders, status):
        assert result.is_error
        assert result.structured_content is None
    assert "Unknown customer_id 'c-9999'" in customer.content[0].text
    assert "c-1001" in customer.content[0].text
    assert "Unknown customer_id 'c-9999'" in orders.content[0].text
    assert "Unknown status 'lost'" in status.content[0].text


def test_the_current_mode_is_stateless_and_speaks_2026_07_28():
    server = CrmProcess("current")
    try:
        async def go():
            client, recorder = await session(server.url)
            async with client:
                await client.list_tools()
                await client.call_tool("get_customer", {"customer_id": "c-1002"})
                return client.session.protocol_version, recorder.exchanges

        version, exchanges = run(go)
    finally:
        server.stop()
    assert version == MODERN
    methods = [e["method"] for e in exchanges]
    assert methods[0] == "server/discover"
    assert "initialize" not in methods
    for e in exchanges:
        assert "mcp-session-id" not in e["request"] and "mcp-session-id" not in e["response"]
        if e["method"] is not None:
            assert e["request"]["mcp-protocol-version"] == MODERN


def test_the_legacy_mode_uses_initialize_and_its_session_id():
    server = CrmProcess("legacy")
    try:
        async def go():
            client, recorder = await session(server.url)
            async with client:
                await client.list_tools()
                await client.call_tool("get_customer", {"customer_id": "c-1002"})
                return client.session.protocol_version, recorder.exchanges

        version, exchanges = run(go)
    finally:
        server.stop()
    # The client probes the current revision first, is refused, and falls back.
    assert version == "2025-11-25"
    methods = [e["method"] for e in exchanges if e["http"] == "POST"]
    assert methods[:2] == ["server/discover", "initialize"]
    assert exchanges[0]["status"] == 400
    init = next(e for e in exchanges if e["method"] == "initialize")
    session_id = init["response"]["mcp-session-id"]
    assert session_id
    later = [e for e in exchanges if e["method"] in ("tools/list", "tools/call")]
    assert len(later) == 2
    for e in later:
        assert e["request"]["mcp-session-id"] == session_id
        assert e["request"]["mcp-protocol-version"] == "2025-11-25"


def test_the_legacy_mode_serves_2025_06_18_too():
    server = CrmProcess("legacy")
    try:
        init = raw_post(server.url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}, {})
    finally:
        server.stop()
    assert init.status_code == 200
    assert init.headers["mcp-session-id"]
    assert '"protocolVersion":"2025-06-18"' in init.text


def raw_post(url, body, headers):
    base = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    with httpx2.Client() as http:
        return http.post(url, headers={**base, **headers}, content=json.dumps(body))


def test_raw_server_discover_is_answered_without_a_session():
    server = CrmProcess("current")
    try:
        discover = raw_post(server.url,
                            {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": META}},
                            {"mcp-protocol-version": MODERN, "mcp-method": "server/discover"})
        initialize = raw_post(server.url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}, {})
        call = raw_post(server.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "get_customer", "arguments": {"customer_id": "c-1004"}, "_meta": META}},
            {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "get_customer"})
    finally:
        server.stop()
    assert discover.status_code == 200
    assert "mcp-session-id" not in discover.headers
    assert discover.headers["content-type"] == "application/json"
    assert discover.json()["result"]["supportedVersions"] == [MODERN]
    # A handshake-era client is told which revision this server speaks.
    assert initialize.status_code == 400
    assert initialize.json()["error"]["code"] == -32022
    assert initialize.json()["error"]["data"] == {"supported": [MODERN], "requested": "2025-11-25"}
    assert call.status_code == 200
    assert "mcp-session-id" not in call.headers
    assert call.json()["result"]["structuredContent"]["name"] == "Katherine Johnson"


def test_raw_legacy_initialize_answers_with_a_session_id_and_refuses_2026_07_28():
    server = CrmProcess("legacy")
    try:
        initialize = raw_post(server.url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}, {})
        discover = raw_post(server.url,
                            {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": META}},
                            {"mcp-protocol-version": MODERN, "mcp-method": "server/discover"})
        no_session = raw_post(server.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                              {"mcp-protocol-version": "2025-11-25"})
    finally:
        server.stop()
    assert initialize.status_code == 200
    assert len(initialize.headers["mcp-session-id"]) >= 16
    assert discover.status_code == 400
    assert "mcp-session-id" not in discover.headers
    assert no_session.status_code == 400


def test_a_token_is_required_when_set(crm_with_token):
    body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": META}}
    headers = {"mcp-protocol-version": MODERN, "mcp-method": "server/discover"}
    missing = raw_post(crm_with_token.url, body, headers)
    wrong = raw_post(crm_with_token.url, body, {**headers, "authorization": "Bearer nope"})
    right = raw_post(crm_with_token.url, body, {**headers, "authorization": "Bearer s3cret-token"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert right.status_code == 200

    async def go():
        client, _ = await session(crm_with_token.url, headers={"Authorization": "Bearer s3cret-token"})
        async with client:
            return await client.call_tool("get_customer", {"customer_id": "c-1001"})

    assert not run(go).is_error


def test_the_server_refuses_a_busy_port():
    first = CrmProcess("current")
    try:
        port = first.url.rsplit(":", 1)[1].split("/")[0]
        proc = subprocess.run([sys.executable, str(SERVER), "--port", port], capture_output=True, text=True,
                              timeout=60, env={**os.environ})
    finally:
        first.stop()
    assert proc.returncode != 0
    assert "listening on" not in proc.stdout


def test_tool_lists_carry_a_ttl_in_the_current_mode():
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
    headers = {"mcp-protocol-version": MODERN, "mcp-method": "tools/list"}
    answers = {}
    for ttl in (None, "0", "1500"):
        server = CrmProcess("current", extra=() if ttl is None else ("--tools-ttl-ms", ttl))
        try:
            answers[ttl] = raw_post(server.url, body, headers).json()["result"]
        finally:
            server.stop()
    assert answers[None]["ttlMs"] == 60000
    assert answers["0"]["ttlMs"] == 0
    assert answers["1500"]["ttlMs"] == 1500
    assert {a["cacheScope"] for a in answers.values()} == {"private"}


@pytest.mark.parametrize("mode", ["current", "legacy"])
def test_rendezvous_calls_answer_when_all_are_in_flight_together(mode):
    server = CrmProcess(mode, extra=("--rendezvous", "3"))
    try:
        async def go():
            client, _ = await session(server.url)
            results = {}
            async with client:
                async def call(name, args):
                    results[name] = await client.call_tool(name, args)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(call, "get_customer", {"customer_id": "c-1002"})
                    tg.start_soon(call, "list_orders", {"customer_id": "c-1002"})
                    tg.start_soon(call, "search_kb", {"query": "warranty"})
                # Past the rendezvous, calls answer at once.
                results["after"] = await client.call_tool("get_customer", {"customer_id": "c-1003"})
            return results

        results = run(go)
    finally:
        server.stop()
    assert not any(r.is_error for r in results.values())
    assert results["get_customer"].structured_content["name"] == "Grace Hopper"
    assert results["after"].structured_content["name"] == "Alan Turing"


@pytest.mark.parametrize("mode", ["current", "legacy"])
def test_a_hanging_tool_never_answers_and_the_others_do(mode):
    server = CrmProcess(mode, extra=("--hang", "list_orders"))
    try:
        async def go():
            client, _ = await session(server.url)
            async with client:
                answered = await client.call_tool("get_customer", {"customer_id": "c-1001"})
                # The bound is the test's only way to see "never"; no answer can come.
                with anyio.move_on_after(1) as scope:
                    await client.call_tool("list_orders", {"customer_id": "c-1001"})
                return answered, scope.cancelled_caught

        answered, hung = run(go)
    finally:
        server.stop()
    assert not answered.is_error
    assert hung


def test_hang_names_a_tool():
    proc = subprocess.run([sys.executable, str(SERVER), "--port", "0", "--hang", "nope"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "--hang: no tool nope" in proc.stderr
