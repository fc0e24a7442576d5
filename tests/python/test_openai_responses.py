"""The official OpenAI Python SDK against the local server's Responses door
(`/v1/responses` and its companion routes): only the base URL changes.
ctxgate keeps the state: every stored response is a turn of a ctxgate
conversation, continued by `previous_response_id` (a fork when it is not
the latest) or by `conversation`, on any provider. Each turn runs against an
OpenAI-wire upstream (Chat Completions) and an Anthropic-wire one, and the
tests check what each upstream received: the whole history, and the
instructions of this request only (OpenAI's semantics)."""

import json

import openai
import pytest

from conftest import STREAM_TEXT

MODELS = {"anthropic": "anthropic/claude-sonnet-4-5", "openai": "openai/gpt-4o-mini"}
UPSTREAM_MODEL = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4o-mini"}

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather forecast for a city.",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string"}, "days": {"type": "integer"}, "note": {"type": "string"}},
               "required": ["city"]},
           "strict": False}

# The events of one output item, by its type.
ITEM_EVENTS = {
    "message": {"response.content_part.added", "response.output_text.delta", "response.output_text.done",
                "response.output_text.annotation.added", "response.refusal.delta", "response.refusal.done",
                "response.content_part.done"},
    "function_call": {"response.function_call_arguments.delta", "response.function_call_arguments.done"},
    "reasoning": {"response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
                  "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
                  "response.reasoning_text.delta", "response.reasoning_text.done"},
}


@pytest.fixture
def mocks(upstream, anthropic_upstream):
    return {"openai": upstream, "anthropic": anthropic_upstream}


def sdk(server, key):
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def text_of(content):
    """The text of a Chat message's or an Anthropic message's content."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(p["text"] for p in content if p.get("type") == "text")


def seen(provider, body):
    """What an upstream request carried, provider-neutral: the system text
    (None when there is none) and the conversation as (role, text) pairs."""
    if provider == "anthropic":
        system = body.get("system")
        turns = [(m["role"], text_of(m["content"])) for m in body["messages"]]
        return (text_of(system) if system else None), turns
    system = [text_of(m["content"]) for m in body["messages"] if m["role"] in ("system", "developer")]
    turns = [(m["role"], text_of(m["content"])) for m in body["messages"]
             if m["role"] not in ("system", "developer")]
    return (" ".join(system) if system else None), turns


def only(mocks, provider):
    """The requests `provider`'s upstream received; the other got none."""
    other = "openai" if provider == "anthropic" else "anthropic"
    assert mocks[other].received == []
    return [r["body"] for r in mocks[provider].received]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_create_with_a_string_and_with_items(both_server, mocks, provider):
    """A string input is one user message; items (typed or not) keep their
    roles; the answer is a stored `response` whose conversation is named in
    its body and in `x-conversation-id`."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    raw = c.responses.with_raw_response.create(model=MODELS[provider], input="My favourite colour is teal.")
    r = raw.parse()
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status == "completed"
    assert r.model == MODELS[provider]
    assert [o.type for o in r.output] == ["message"]
    assert r.output[0].role == "assistant" and r.output[0].content[0].type == "output_text"
    assert r.output_text == "saw: My favourite colour is teal."
    assert r.conversation is not None and r.conversation.id
    assert raw.headers["x-conversation-id"] == r.conversation.id
    assert r.previous_response_id is None
    if provider == "openai":
        assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (10, 3, 13)
    else:
        assert r.usage.output_tokens == 4 and r.usage.input_tokens >= 25
        assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens

    items = c.responses.create(model=MODELS[provider], instructions="Be brief.", input=[
        {"role": "user", "content": "Hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What next?"}]},
    ])
    assert items.output_text == "saw: Hi | What next?"
    assert items.conversation.id != r.conversation.id, "no previous_response_id: a new conversation"

    first, second = only(mocks, provider)
    assert first["model"] == second["model"] == UPSTREAM_MODEL[provider]
    assert seen(provider, first) == (None, [("user", "My favourite colour is teal.")])
    assert seen(provider, second) == ("Be brief.", [("user", "Hi"), ("assistant", "Hello."), ("user", "What next?")])


def check_event_grammar(events):
    """OpenAI's order: created, in_progress, then each output item opened,
    filled and closed in turn (only its own kinds of events, with its
    output_index), then completed; sequence numbers 0, 1, 2, ...
    Returns the output items' types."""
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] == "response.completed", kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    ids = {e.response.id for e in events if e.type in ("response.created", "response.in_progress", "response.completed")}
    assert len(ids) == 1
    open_item, items = None, []
    for e in events[2:-1]:
        if e.type == "response.output_item.added":
            assert open_item is None and e.output_index == len(items), kinds
            open_item = e.item.type
            items.append(open_item)
        elif e.type == "response.output_item.done":
            assert e.output_index == len(items) - 1 and e.item.type == open_item
            open_item = None
        else:
            assert open_item is not None and e.type in ITEM_EVENTS[open_item], (e.type, open_item)
            assert e.output_index == len(items) - 1
    assert open_item is None
    return items


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_stream_with_a_tool_call(both_server, mocks, provider):
    """The SDK's stream helper over typed events in OpenAI's order: the
    text arrives in deltas, the call's arguments in pieces, and the final
    response holds both, with the upstream's usage."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    tool_input = {"city": "Oslo", "days": 3, "note": "smørrebrød ✓ — \"quoted\", {braces}"}
    mocks[provider].tool_input = tool_input
    with c.responses.stream(model=MODELS[provider], input="Weather in Oslo for 3 days?", tools=[WEATHER],
                            tool_choice="auto") as stream:
        events = list(stream)
        final = stream.get_final_response()

    items = check_event_grammar(events)
    assert [t for t in items if t != "reasoning"] == ["message", "function_call"]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "".join(STREAM_TEXT)
    done = [e for e in events if e.type == "response.output_text.done"]
    assert [e.text for e in done] == [text]
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(pieces) >= 2
    args = [e.arguments for e in events if e.type == "response.function_call_arguments.done"]
    assert [json.loads(a) for a in args] == [tool_input] and "".join(pieces) == args[0]

    assert final.status == "completed"
    assert final.id == events[0].response.id
    assert final.output_text == text
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(o.name, json.loads(o.arguments)) for o in calls] == [("get_weather", tool_input)]
    assert calls[0].call_id
    if provider == "openai":
        assert (final.usage.input_tokens, final.usage.output_tokens) == (321, 45)
    else:
        assert final.usage.output_tokens == 87

    (body,) = only(mocks, provider)
    assert body["stream"] is True
    if provider == "openai":
        assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
        assert body["tools"][0]["function"]["parameters"] == WEATHER["parameters"]
        assert body.get("tool_choice", "auto") == "auto"
    else:
        assert [(t["name"], t["input_schema"]) for t in body["tools"]] == [("get_weather", WEATHER["parameters"])]
        assert body.get("tool_choice", {"type": "auto"}) == {"type": "auto"}


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_event_stream_on_the_wire(both_server, mocks, provider):
    """The raw stream: `event:` names each `data:` object's type, sequence
    numbers count from 0, and there is no `[DONE]`."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    names, datas = [], []
    with c.responses.with_streaming_response.create(model=MODELS[provider], input="Hello", stream=True) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-conversation-id"]
        for line in resp.iter_lines():
            assert "[DONE]" not in line
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
            elif line.startswith("data: "):
                datas.append(json.loads(line.removeprefix("data: ")))
    assert names == [d["type"] for d in datas]
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert datas[-1]["response"]["conversation"] == {"id": resp.headers["x-conversation-id"]}


def test_retrieve_then_delete(both_server, mocks):
    """A stored response reads back as it was answered; once deleted, it
    is a 404 to retrieve, to delete again and to continue."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    r = c.responses.create(model=MODELS["openai"], input="Remember me.", metadata={"run": "42"})
    got = c.responses.retrieve(r.id)
    assert (got.id, got.status, got.output_text, got.conversation.id) == (r.id, "completed", r.output_text,
                                                                          r.conversation.id)
    assert got.metadata == {"run": "42"}
    assert got.usage.total_tokens == r.usage.total_tokens

    deleted = c.responses.with_raw_response.delete(r.id)
    assert deleted.http_response.json() == {"id": r.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.retrieve(r.id)
    assert e.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.create(model=MODELS["openai"], previous_response_id=r.id, input="Still there?")
    assert e.value.body["param"] == "previous_response_id"
    assert len(mocks["openai"].received) == 1


def test_input_items_paginate(both_server, mocks):
    """`input_items.list` pages by `after`; the SDK's auto-pagination walks
    every item once, oldest first with `order=asc`, newest first by default."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    texts = ["one", "two", "three", "four", "five"]
    r = c.responses.create(model=MODELS["openai"], input=[
        {"type": "message", "role": "assistant" if i % 2 else "user",
         "content": [{"type": "output_text" if i % 2 else "input_text", "text": t}]}
        for i, t in enumerate(texts)])

    first = c.responses.input_items.list(r.id, limit=2, order="asc")
    assert len(first.data) == 2 and first.has_more is True
    walked = list(c.responses.input_items.list(r.id, limit=2, order="asc"))
    assert [i.type for i in walked] == ["message"] * 5
    assert [i.content[0].text for i in walked] == texts
    assert [i.role for i in walked] == ["user", "assistant", "user", "assistant", "user"]
    ids = [i.id for i in walked]
    assert len(set(ids)) == 5 and all(ids)
    assert [i.id for i in first.data] == ids[:2]
    after = c.responses.input_items.list(r.id, limit=2, order="asc", after=ids[1])
    assert [i.id for i in after.data] == ids[2:4]
    newest_first = list(c.responses.input_items.list(r.id, limit=3))
    assert [i.id for i in newest_first] == ids[::-1]
    last = c.responses.input_items.list(r.id, limit=100, order="asc")
    assert last.has_more is False and [i.id for i in last.data] == ids


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_input_tokens(both_server, mocks, provider):
    """A count of the request's input, labelled: Anthropic's own count when
    ctxgate asks it, else ctxgate's estimate; no turn is run or stored."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    raw = c.responses.input_tokens.with_raw_response.count(
        model=MODELS[provider], instructions="Be brief.", tools=[WEATHER],
        input="How many tokens is this sentence?")
    counted = raw.parse()
    assert counted.object == "response.input_tokens"
    label = raw.headers["x-ctxgate-token-count"]
    assert label in ("estimate", "provider")
    if label == "provider":
        assert provider == "anthropic" and counted.input_tokens == mocks["anthropic"].count_tokens
        assert [r["path"] for r in mocks["anthropic"].received] == ["/v1/messages/count_tokens"]
    else:
        assert counted.input_tokens > 10, "an estimate, never a made-up zero"
        assert mocks["anthropic"].received == []
    assert mocks["openai"].received == []


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_previous_response_id_carries_history_not_instructions(both_server, mocks, provider):
    """Three turns chained by previous_response_id: each upstream request
    holds the whole history, and only its own request's instructions."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    model = MODELS[provider]
    r1 = c.responses.create(model=model, instructions="Answer in English.", input="My favourite colour is teal.")
    r2 = c.responses.create(model=model, instructions="Answer in French.", previous_response_id=r1.id,
                            input="What is my favourite colour?")
    r3 = c.responses.create(model=model, previous_response_id=r2.id, input="And again?")
    assert r2.previous_response_id == r1.id and r3.previous_response_id == r2.id
    assert r1.conversation.id == r2.conversation.id == r3.conversation.id
    assert "teal" in r2.output_text

    b1, b2, b3 = only(mocks, provider)
    history = [("user", "My favourite colour is teal."), ("assistant", "saw: My favourite colour is teal.")]
    assert seen(provider, b1) == ("Answer in English.", history[:1])
    history += [("user", "What is my favourite colour?")]
    assert seen(provider, b2) == ("Answer in French.", history)
    history += [("assistant", r2.output_text), ("user", "And again?")]
    assert seen(provider, b3) == (None, history)


def test_previous_response_id_across_providers(both_server, mocks):
    """A response answered by an OpenAI model, continued on an Anthropic
    model and back: each upstream gets the whole history in its own wire."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    r1 = c.responses.create(model=MODELS["openai"], input="My favourite colour is teal.")
    r2 = c.responses.create(model=MODELS["anthropic"], previous_response_id=r1.id, instructions="Be brief.",
                            input="What is my favourite colour?")
    r3 = c.responses.create(model=MODELS["openai"], previous_response_id=r2.id, input="Sure?")
    assert r1.conversation.id == r2.conversation.id == r3.conversation.id

    (to_anthropic,) = [r["body"] for r in mocks["anthropic"].received]
    assert to_anthropic["model"] == UPSTREAM_MODEL["anthropic"]
    assert seen("anthropic", to_anthropic) == ("Be brief.", [
        ("user", "My favourite colour is teal."), ("assistant", "saw: My favourite colour is teal."),
        ("user", "What is my favourite colour?")])
    first, last = [r["body"] for r in mocks["openai"].received]
    assert seen("openai", last) == (None, [
        ("user", "My favourite colour is teal."), ("assistant", "saw: My favourite colour is teal."),
        ("user", "What is my favourite colour?"), ("assistant", r2.output_text), ("user", "Sure?")])


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_function_call_output_round_trip(both_server, mocks, provider):
    """A streamed answer calls the tool; the next request sends only the
    function_call_output (by call_id) after previous_response_id, and the
    upstream gets the stored call (for Anthropic with its thinking block
    and signature) before the result."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    mock = mocks[provider]
    with c.responses.stream(model=MODELS[provider], input="Weather in Oslo?", tools=[WEATHER]) as stream:
        first = stream.get_final_response()
    (call,) = [o for o in first.output if o.type == "function_call"]

    second = c.responses.create(model=MODELS[provider], previous_response_id=first.id, tools=[WEATHER], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 °C"}])
    assert second.status == "completed"
    assert second.output_text.startswith("saw: Weather in Oslo?")
    assert second.conversation.id == first.conversation.id

    assert len(mock.received) == 2
    history = mock.received[1]["body"]["messages"]
    if provider == "anthropic":
        assert [m["role"] for m in history] == ["user", "assistant", "user"]
        blocks = history[1]["content"]
        assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use"]
        assert blocks[0]["signature"] == mock.signature
        # ctxgate may mark the end of the stored history for prompt caching.
        assert {k: v for k, v in blocks[2].items() if k != "cache_control"} == {
            "type": "tool_use", "id": call.call_id, "name": "get_weather", "input": mock.tool_input}
        (result,) = history[2]["content"]
        assert result["type"] == "tool_result" and result["tool_use_id"] == call.call_id
        assert "Sunny, 21 °C" in json.dumps(result, ensure_ascii=False)
    else:
        assert [m["role"] for m in history] == ["user", "assistant", "tool"]
        (sent,) = history[1]["tool_calls"]
        assert sent["id"] == call.call_id and sent["function"]["name"] == "get_weather"
        assert json.loads(sent["function"]["arguments"]) == mock.tool_input
        assert history[2]["tool_call_id"] == call.call_id
        assert "Sunny, 21 °C" in text_of(history[2]["content"])


def test_fork_from_a_response_that_is_not_the_latest(both_server, mocks):
    """Continuing from r1 after r2 followed it forks: the fork's history
    stops at r1 and it lives in a new conversation; the original goes on
    from r2 without the fork's turn."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    model = MODELS["openai"]
    r1 = c.responses.create(model=model, input="A")
    r2 = c.responses.create(model=model, previous_response_id=r1.id, input="B")
    fork = c.responses.create(model=model, previous_response_id=r1.id, input="C")
    assert fork.previous_response_id == r1.id
    assert fork.conversation.id not in (None, r1.conversation.id)
    on_fork = c.responses.create(model=model, previous_response_id=fork.id, input="C2")
    assert on_fork.conversation.id == fork.conversation.id
    r4 = c.responses.create(model=model, previous_response_id=r2.id, input="D")
    assert r4.conversation.id == r1.conversation.id == r2.conversation.id

    bodies = [r["body"] for r in mocks["openai"].received]
    assert [t for _, t in seen("openai", bodies[2])[1]] == ["A", "saw: A", "C"]
    assert [t for _, t in seen("openai", bodies[3])[1]] == ["A", "saw: A", "C", "saw: A | C", "C2"]
    assert [t for _, t in seen("openai", bodies[4])[1]] == ["A", "saw: A", "B", "saw: A | B", "D"]
    # The original response still reads as it was.
    assert c.responses.retrieve(r1.id).output_text == "saw: A"


def test_store_false_leaves_nothing_behind(both_server, mocks):
    """A response with store false is answered but cannot be retrieved,
    listed or continued, and the tenant has no conversation."""
    c = sdk(both_server, both_server.create_key("resp-unstored"))
    raw = c.responses.with_raw_response.create(model=MODELS["openai"], input="Forget this.", store=False)
    r = raw.parse()
    assert r.output_text == "saw: Forget this."
    assert r.store is False and r.conversation is None
    assert "x-conversation-id" not in raw.headers
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.input_items.list(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.create(model=MODELS["openai"], previous_response_id=r.id, input="Remember?")
    assert e.value.body["param"] == "previous_response_id"
    with c.responses.stream(model=MODELS["openai"], input="Forget this too.", store=False) as stream:
        streamed = stream.get_final_response()
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(streamed.id)
    listed = c.get("/conversations", cast_to=object)
    assert listed["data"] == []


def test_conversation_param_continues_a_created_conversation(both_server, mocks):
    """A conversation made with `client.conversations.create` (with an
    item) is continued by `conversation`, as an id or as `{"id": ...}`."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    conv = c.conversations.create(metadata={"topic": "trip"},
                                  items=[{"type": "message", "role": "user", "content": "I live in Oslo."}])
    r1 = c.responses.create(model=MODELS["openai"], conversation=conv.id, input="My favourite colour is teal.")
    assert r1.conversation.id == conv.id
    r2 = c.responses.create(model=MODELS["anthropic"], conversation={"id": conv.id},
                            input="Where do I live?")
    assert r2.conversation.id == conv.id

    # The conversation's item, then the turn (two user messages in a row may be sent as one).
    system, turns = seen("openai", mocks["openai"].received[0]["body"])
    assert system is None and {r for r, _ in turns} == {"user"}
    assert " ".join(t for _, t in turns) == "I live in Oslo. My favourite colour is teal."
    body = mocks["anthropic"].received[0]["body"]
    assert seen("anthropic", body)[1][-2:] == [("assistant", r1.output_text), ("user", "Where do I live?")]
    earlier = json.dumps(body["messages"][:-2])
    assert earlier.index("I live in Oslo.") < earlier.index("My favourite colour is teal.")


def test_bad_input_is_refused_naming_the_field(both_server, mocks):
    """Malformed or unknown items, previous_response_id with a conflicting
    conversation, background, and ids unknown or of another tenant: a 400
    or 404 in OpenAI's envelope naming the field, and nothing changes."""
    c = sdk(both_server, both_server.create_key("resp-tenant"))
    other = sdk(both_server, both_server.create_key("resp-other-tenant"))
    model = MODELS["openai"]
    r1 = c.responses.create(model=model, input="Mine.")
    elsewhere = c.responses.create(model=model, input="Another conversation.")
    sent = len(mocks["openai"].received)

    def refused(error, client=c, **params):
        with pytest.raises(error) as e:
            client.responses.create(model=model, **params)
        assert e.value.body["type"] == "invalid_request_error"
        return e.value.body["param"]

    assert refused(openai.BadRequestError, input=[{"type": "telepathy", "content": "x"}]).startswith("input[0]")
    assert refused(openai.BadRequestError, input=[
        {"role": "user", "content": "ok"}, {"type": "function_call_output", "output": "no call_id"}],
    ).startswith("input[1]")
    assert refused(openai.BadRequestError, input=[{"type": "message", "role": "user", "content": 5}]
                   ).startswith("input[0]")
    assert refused(openai.BadRequestError, input="Both?", previous_response_id=r1.id,
                   conversation=elsewhere.conversation.id) == "conversation"
    assert refused(openai.BadRequestError, input="Later.", background=True) == "background"
    assert refused(openai.NotFoundError, input="Who?", previous_response_id="resp_doesnotexist") \
        == "previous_response_id"
    assert refused(openai.NotFoundError, client=other, input="Yours?", previous_response_id=r1.id) \
        == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(r1.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(r1.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(r1.id)
    with pytest.raises(openai.AuthenticationError):
        sdk(both_server, "cgk_not-a-key").responses.create(model=model, input="x")

    # Nothing reached the upstream, and the response is as it was.
    assert len(mocks["openai"].received) == sent
    assert c.responses.retrieve(r1.id).output_text == "saw: Mine."
    c.responses.create(model=model, previous_response_id=r1.id, input="Still mine.")
    assert [t for _, t in seen("openai", mocks["openai"].received[-1]["body"])[1]] == [
        "Mine.", "saw: Mine.", "Still mine."]


def test_logs_of_the_responses_door_carry_no_content_or_keys(both_server, mocks):
    """Access lines for /v1/responses name tenant, model and status; no
    input, instructions, output, client key or provider key reaches the log."""
    key = both_server.create_key("resp-logs")
    c = sdk(both_server, key)
    r = c.responses.create(model=MODELS["anthropic"], instructions="zebra-secret-instructions",
                           input="zebra-secret-phrase")
    with c.responses.stream(model=MODELS["openai"], previous_response_id=r.id, tools=[WEATHER],
                            input="zebra-secret-phrase again") as stream:
        stream.get_final_response()
    c.responses.retrieve(r.id)
    c.responses.input_tokens.count(model=MODELS["openai"], input="zebra-secret-phrase")
    both_server.stop()
    log = "".join(both_server.log)
    for secret in ("zebra-secret", "Oslo", key, "sk-upstream-secret-for-tests", "sk-ant-upstream-secret-for-tests"):
        assert secret not in log
    lines = [json.loads(line) for line in both_server.log if line.strip()]
    access = [l for l in lines if l.get("message") == "request" and l.get("path") == "/v1/responses"]
    assert [(l["status"], l["model"], l["tenant"]) for l in access] == [
        (200, MODELS["anthropic"], "resp-logs"), (200, MODELS["openai"], "resp-logs")]
