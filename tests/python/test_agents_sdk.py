"""The OpenAI Agents SDK (`openai-agents`) against the local server: an
agent with one function tool, on the SDK's Responses model
(`OpenAIResponsesModel` over an `AsyncOpenAI` client whose base URL is
ctxgate), runs to its final output. The OpenAI-wire mock upstream calls the
tool first and answers once it has the tool's result. The agent keeps its
own history, or leaves it to ctxgate (`previous_response_id`, or a
conversation made with `client.conversations.create`); either way the
upstream's second request holds the question, the call and its result."""

import asyncio
import json

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from conftest import STREAM_TEXT

MODEL = "openai/gpt-4o-mini"
QUESTION = "What is the weather in Oslo?"


@pytest.fixture(autouse=True)
def no_tracing():
    # Tracing would export spans to OpenAI; the tests stay on loopback.
    set_tracing_disabled(True)


def make_agent(server, key, calls):
    @function_tool
    def get_weather(city: str) -> str:
        """The weather forecast for a city."""
        calls.append(city)
        return f"Sunny, 21 °C in {city}"

    client = openai.AsyncOpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    return Agent(name="forecaster", instructions="Answer with the forecast.", tools=[get_weather],
                 model=OpenAIResponsesModel(model=MODEL, openai_client=client))


async def run(agent, streamed, **state):
    if not streamed:
        return await Runner.run(agent, QUESTION, max_turns=4, **state)
    result = Runner.run_streamed(agent, QUESTION, max_turns=4, **state)
    async for _ in result.stream_events():
        pass
    return result


@pytest.mark.parametrize("state", ["client", "previous_response_id", "conversation"])
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_agent_calls_its_tool_and_finishes(both_server, upstream, state, streamed):
    key = both_server.create_key("agents-tenant")
    upstream.tool_then_answer = True
    upstream.tool_input = {"city": "Oslo"}
    calls = []
    agent = make_agent(both_server, key, calls)
    params = {}
    if state == "previous_response_id":
        params["auto_previous_response_id"] = True
    elif state == "conversation":
        sync = openai.OpenAI(base_url=both_server.base_url, api_key=key, max_retries=0)
        params["conversation_id"] = sync.conversations.create(metadata={"agent": "forecaster"}).id

    result = asyncio.run(run(agent, streamed, **params))

    assert calls == ["Oslo"]
    # The mock answers a tool's result with text: a whole answer quotes the
    # user's messages, a streamed one is the stream's text.
    expected = "".join(STREAM_TEXT) if streamed else f"saw: {QUESTION}"
    assert result.final_output == expected

    first, second = (r["body"] for r in upstream.received)
    assert first["model"] == second["model"] == "gpt-4o-mini"
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert first["messages"][-1]["role"] == "user" and QUESTION in json.dumps(first["messages"][-1])
    roles = [m["role"] for m in second["messages"]]
    assert roles[-3:] == ["user", "assistant", "tool"]
    assert roles.count("user") == 1, "the question once, however the state was kept"
    assert roles[0] in ("system", "developer") and "Answer with the forecast." in json.dumps(second["messages"][0])
    (call,) = second["messages"][-2]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert second["messages"][-1]["tool_call_id"] == call["id"]
    assert "Sunny, 21 °C in Oslo" in json.dumps(second["messages"][-1], ensure_ascii=False)
