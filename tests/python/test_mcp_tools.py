"""Issue 15 end to end: the example CRM MCP server (the official Python `mcp` SDK, both protocol
eras) registered with a real `ctxgate serve` through the admin API, and a chat through the
official OpenAI SDK in which the `echo` model calls its tools: the README's example, run."""

import json
import os
import urllib.error
import urllib.request

import pytest
from openai import OpenAI

from conftest import CrmProcess, Server, free_port

TOKEN = "crm-secret-token"


@pytest.fixture
def server(upstream, tmp_path):
    """`ctxgate serve` allowed to reach MCP servers on loopback over plain http."""
    binary = os.environ["CTXGATE_BIN"]
    config = tmp_path / "ctxgate.toml"
    config.write_text('[mcp]\nallowed_hosts = ["127.0.0.1"]\n')
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CTXGATE_STORE": "embedded",
        "CTXGATE_DATA_DIR": str(tmp_path / "data"),
        "CTXGATE_LISTEN": f"127.0.0.1:{port}",
        "CTXGATE_CONFIG": str(config),
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "OPENAI_API_KEY": "sk-upstream-secret-for-tests",
        "RUST_LOG": "debug",
    }
    srv = Server(binary, env)
    srv.base_url = f"http://127.0.0.1:{port}/v1"
    yield srv
    srv.stop()


@pytest.fixture(params=["current", "legacy"])
def crm(request):
    server = CrmProcess(request.param, token=TOKEN)
    server.mode = request.param
    yield server
    server.stop()


def admin(server, key, method, path, body=None):
    req = urllib.request.Request(
        server.base_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_a_chat_uses_the_registered_crm(server, crm):
    key = server.create_key("shop", "chat", "admin", "conversations:read")
    status, created = admin(server, key, "POST", "/admin/mcp-servers", {
        "name": "crm", "url": crm.url, "headers": {"Authorization": f"Bearer {TOKEN}"}})
    assert status == 201, created
    assert created["headers"] == ["Authorization"]
    assert TOKEN not in json.dumps(created)

    client = OpenAI(base_url=server.base_url, api_key=key)
    ask = '/tool crm__get_customer {"customer_id": "c-1001"}'
    reply = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": ask}],
        extra_body={"mcp_servers": ["crm"], "conversation_id": f"crm-{crm.mode}"})
    text = reply.choices[0].message.content
    assert "tool crm__get_customer said:" in text
    assert "Ada Lovelace" in text
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.tool_calls is None

    # Streamed, through the SDK: one well-formed stream, the tool's answer in it.
    stream = client.chat.completions.create(
        model="echo", stream=True, messages=[{"role": "user", "content":
            '/tool crm__search_kb {"query": "refund"}'}],
        extra_body={"mcp_servers": ["crm"]})
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed.startswith("tool crm__search_kb said:"), streamed

    # The stored conversation names the server, the tool and the outcome.
    conv = client.get(f"/conversations/crm-{crm.mode}", cast_to=object)
    tools = [m for m in conv["messages"]["data"] if m["role"] == "tool"]
    assert [(t["tool"]["server"], t["tool"]["tool"], t["tool"]["outcome"]) for t in tools] == [
        ("crm", "get_customer", "ok")]

    # An unknown customer is an error result the model sees; the turn still answers.
    reply = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content":
            '/tool crm__get_customer {"customer_id": "c-0000"}'}],
        extra_body={"mcp_servers": ["crm"]})
    assert "tool crm__get_customer said:" in reply.choices[0].message.content

    # The CRM's credential never reached the gateway's log.
    server.stop()
    assert TOKEN not in "".join(server.log)


@pytest.mark.parametrize("client_mode", ["auto", "legacy"])
def test_an_mcp_client_calls_the_crm_through_ctxgate(server, crm, client_mode):
    """Issue 16, point 6: the official MCP client, pointed at ctxgate's /mcp, lists the tenant's
    registered CRM tools and calls one; the CRM gets the registered credential, never the
    client's key."""
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    key = server.create_key("shop", "mcp", "admin")
    status, _ = admin(server, key, "POST", "/admin/mcp-servers", {
        "name": "crm", "url": crm.url, "headers": {"Authorization": f"Bearer {TOKEN}"}})
    assert status == 201

    async def go():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
        url = server.base_url.removesuffix("/v1") + "/mcp"
        async with Client(streamable_http_client(url, http_client=http), mode=client_mode) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("crm__get_customer", {"customer_id": "c-1002"})
            return tools, result

    tools, result = anyio.run(go)
    assert {"crm__get_customer", "crm__list_orders", "crm__search_kb"} <= set(tools), tools
    assert not result.is_error, result
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert "Grace Hopper" in text, text
    assert result.structured_content["name"] == "Grace Hopper", result.structured_content

    # The call was audited, without its arguments.
    status, calls = admin(server, key, "GET", "/admin/mcp-calls")
    assert status == 200, calls
    assert [(c["server"], c["tool"], c["outcome"]) for c in calls["data"]] == [
        ("crm", "get_customer", "ok")]
    assert "c-1002" not in json.dumps(calls)
