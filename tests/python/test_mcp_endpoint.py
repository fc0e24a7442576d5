"""ctxgate's own MCP endpoint (`POST /mcp`) through the official `mcp` client, in the current mode
(2026-07-28: `server/discover`, no handshake) and in the legacy mode (initialize, no session).

A real `ctxgate serve` on the embedded store; the model is the mock OpenAI upstream of conftest,
which answers with every user message it saw, so the second `chat` turn shows the first.
"""

import json

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

MODES = ["auto", "legacy"]
OWN_TOOLS = ["chat", "list_conversations", "get_conversation", "delete_conversation", "get_usage"]


class Recorder:
    """The JSON-RPC method, request headers and response headers of every exchange."""

    def __init__(self):
        self.exchanges = []

    async def on_response(self, response):
        try:
            body = json.loads(response.request.content or b"null")
        except ValueError:
            body = None
        self.exchanges.append({
            "method": body.get("method") if isinstance(body, dict) else None,
            "request": response.request.headers,
            "status": response.status_code,
            "response": response.headers,
        })


def connect(server, key, mode):
    recorder = Recorder()
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"},
                              event_hooks={"response": [recorder.on_response]})
    url = server.base_url.removesuffix("/v1") + "/mcp"
    return Client(streamable_http_client(url, http_client=http), mode=mode), recorder


def run(coro):
    return anyio.run(coro)


def check_era(recorder, mode):
    methods = [e["method"] for e in recorder.exchanges]
    versions = {e["request"].get("mcp-protocol-version") for e in recorder.exchanges if e["method"] != "initialize"}
    if mode == "legacy":
        assert methods[0] == "initialize", methods
        assert "2026-07-28" not in versions, versions
    else:
        assert "initialize" not in methods, methods
        assert versions == {"2026-07-28"}, versions
    # Stateless: no session is ever issued.
    assert not any("mcp-session-id" in e["response"] for e in recorder.exchanges)


@pytest.mark.parametrize("mode", MODES)
def test_the_own_tools_are_listed(server, mode):
    key = server.create_key("acme", "mcp", "chat", "conversations:read")

    async def go():
        client, recorder = connect(server, key, mode)
        async with client:
            return (await client.list_tools()).tools, recorder

    tools, recorder = run(go)
    assert [t.name for t in tools] == OWN_TOOLS
    chat = tools[0]
    assert chat.input_schema["required"] == ["model", "message"]
    assert chat.input_schema["additionalProperties"] is False
    check_era(recorder, mode)


@pytest.mark.parametrize("mode", MODES)
def test_chat_twice_on_a_conversation_remembers_the_first_turn(server, upstream, mode):
    key = server.create_key("acme", "mcp", "chat", "conversations:read")
    conversation = f"py-{mode}"

    async def go():
        client, recorder = connect(server, key, mode)
        async with client:
            first = await client.call_tool("chat", {
                "model": "openai/gpt-4o-mini", "message": "my name is Ada", "conversation_id": conversation})
            second = await client.call_tool("chat", {
                "model": "openai/gpt-4o-mini", "message": "what is my name?", "conversation_id": conversation})
            stored = await client.call_tool("get_conversation", {"conversation_id": conversation})
            bad = await client.call_tool("chat", {"model": "openai/gpt-4o-mini", "message": "x", "colour": "red"})
        return first, second, stored, bad, recorder

    first, second, stored, bad, recorder = run(go)
    assert not first.is_error and not second.is_error
    assert first.content[0].text == "saw: my name is Ada"
    # The second turn's prompt carried the first.
    assert second.content[0].text == "saw: my name is Ada | what is my name?"
    assert second.structured_content["conversation_id"] == conversation
    assert second.structured_content["text"] == second.content[0].text
    assert len(upstream.received) == 2
    # The provider got ctxgate's own key; the client's credential stayed at the endpoint.
    for r in upstream.received:
        assert r["headers"]["authorization"] == "Bearer sk-upstream-secret-for-tests"
        assert key not in str(r["headers"]) and key not in json.dumps(r["body"])
    messages = stored.structured_content["messages"]["data"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    # A bad argument is an isError result naming it; nothing reached the model.
    assert bad.is_error
    assert bad.structured_content["error"]["field"] == "colour"
    check_era(recorder, mode)


def test_a_key_without_the_mcp_scope_is_refused(server):
    key = server.create_key("acme", "chat")

    async def go():
        client, _ = connect(server, key, "legacy")
        async with client:
            await client.list_tools()

    with pytest.raises(BaseException):
        run(go)
