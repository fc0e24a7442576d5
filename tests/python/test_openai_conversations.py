"""The official OpenAI Python SDK's Conversations API against the local
server: conversations created with items and metadata, retrieved, updated
and deleted; items listed (auto-paginated both ways), added, retrieved and
deleted; a conversation made here continued through Chat Completions; bad
input as the SDK's typed errors naming the field."""

import openai
import pytest


def client(server, key):
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


EXCHANGE = [
    {"type": "message", "role": "user", "content": "My favourite colour is teal."},
    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "note it"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Noted."}]},
    {"type": "function_call", "call_id": "call_1", "name": "remember", "arguments": "{\"colour\":\"teal\"}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "stored"},
]


def test_conversations_create_retrieve_update_delete(server):
    c = client(server, server.create_key("sdk-conv"))
    conv = c.conversations.create(items=EXCHANGE, metadata={"topic": "colours"})
    assert conv.object == "conversation"
    assert conv.id.startswith("conv_")
    assert conv.created_at > 0
    assert conv.metadata == {"topic": "colours"}

    got = c.conversations.retrieve(conv.id)
    assert (got.id, got.created_at, got.metadata) == (conv.id, conv.created_at, {"topic": "colours"})
    # ctxgate's own fields ride along.
    assert got.model_extra["turns"] == 0

    updated = c.conversations.update(conv.id, metadata={"topic": "paint"})
    assert updated.metadata == {"topic": "paint"}
    assert c.conversations.retrieve(conv.id).metadata == {"topic": "paint"}

    deleted = c.conversations.delete(conv.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (conv.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError) as e:
        c.conversations.retrieve(conv.id)
    assert e.value.body["param"] == "id"


def test_items_list_create_retrieve_delete(server):
    c = client(server, server.create_key("sdk-items"))
    conv = c.conversations.create(items=EXCHANGE)

    newest_first = [i.id for i in c.conversations.items.list(conv.id)]
    assert newest_first == ["fco_2_0", "fc_1_2", "msg_1_1", "rs_1_0", "msg_0_0"]
    # Auto-pagination follows `last_id` through pages of two, both ways.
    assert [i.id for i in c.conversations.items.list(conv.id, limit=2)] == newest_first
    oldest_first = [i.id for i in c.conversations.items.list(conv.id, limit=2, order="asc")]
    assert oldest_first == newest_first[::-1]
    page = c.conversations.items.list(conv.id, limit=2, order="asc")
    assert page.has_more is True
    assert [i.id for i in page.data] == ["msg_0_0", "rs_1_0"]
    assert page.last_id == "rs_1_0"

    items = c.conversations.items.list(conv.id, order="asc").data
    assert items[0].type == "message" and items[0].role == "user"
    assert items[0].content[0].type == "input_text"
    assert items[1].type == "reasoning" and items[1].summary[0].text == "note it"
    assert items[2].type == "message" and items[2].content[0].text == "Noted."
    assert items[3].type == "function_call" and items[3].call_id == "call_1"
    assert items[4].type == "function_call_output" and items[4].output == "stored"

    added = c.conversations.items.create(
        conv.id, items=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And you?"}]}],
        include=["reasoning.encrypted_content"])
    assert [i.id for i in added.data] == ["msg_3_0"]
    assert added.first_id == added.last_id == "msg_3_0"
    assert added.has_more is False

    call = c.conversations.items.retrieve("fc_1_2", conversation_id=conv.id)
    assert (call.type, call.name, call.arguments) == ("function_call", "remember", "{\"colour\":\"teal\"}")

    after = c.conversations.items.delete("rs_1_0", conversation_id=conv.id)
    assert (after.object, after.id) == ("conversation", conv.id)
    assert [i.id for i in c.conversations.items.list(conv.id, order="asc")] == [
        "msg_0_0", "msg_1_0", "fc_1_1", "fco_2_0", "msg_3_0"]
    # A message that loses its only item goes.
    c.conversations.items.delete("msg_0_0", conversation_id=conv.id)
    with pytest.raises(openai.NotFoundError) as e:
        c.conversations.items.retrieve("msg_0_0", conversation_id=conv.id)
    assert e.value.body["param"] == "item_id"
    assert [i.id for i in c.conversations.items.list(conv.id, order="asc")] == [
        "msg_1_0", "fc_1_1", "fco_2_0", "msg_3_0"]


def test_a_conversation_made_here_continues_through_chat_completions(server, upstream):
    c = client(server, server.create_key("sdk-continue"))
    conv = c.conversations.create(items=[
        {"type": "message", "role": "user", "content": "My favourite colour is teal."},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Noted."}]},
    ])
    r = c.chat.completions.create(model="openai/gpt-4o-mini", extra_body={"conversation_id": conv.id},
                                  messages=[{"role": "user", "content": "What is my favourite colour?"}])
    assert "teal" in r.choices[0].message.content
    sent = upstream.received[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    items = c.conversations.items.list(conv.id, order="asc").data
    assert [i.role for i in items] == ["user", "assistant", "user", "assistant"]
    assert "teal" in items[3].content[0].text


def test_bad_input_is_a_typed_error_naming_the_field(server):
    c = client(server, server.create_key("sdk-bad"))
    other = client(server, server.create_key("sdk-other"))
    conv = c.conversations.create(items=[{"type": "message", "role": "user", "content": "hi"}])
    cases = [
        (lambda: c.conversations.create(items=[{"type": "web_search_call", "id": "ws_1"}]), "items[0].type"),
        (lambda: c.conversations.items.create(conv.id, items=[{"type": "message", "role": "user"}]),
         "items[0].content"),
        (lambda: c.conversations.update(conv.id, metadata={"k": "v" * 513}), "metadata.k"),
        (lambda: c.conversations.create(metadata={str(i): "v" for i in range(17)}), "metadata"),
        (lambda: c.conversations.items.list(conv.id, include=["everything"]), "include"),
    ]
    for call, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            call()
        assert e.value.body["param"] == param
    not_found = [
        (lambda: c.conversations.items.retrieve("msg_5_0", conversation_id=conv.id), "item_id"),
        (lambda: c.conversations.items.delete("fc_0_0", conversation_id=conv.id), "item_id"),
        (lambda: other.conversations.items.retrieve("msg_0_0", conversation_id=conv.id), "id"),
        (lambda: other.conversations.retrieve(conv.id), "id"),
    ]
    for call, param in not_found:
        with pytest.raises(openai.NotFoundError) as e:
            call()
        assert e.value.body["param"] == param
    # Nothing changed.
    assert [i.id for i in c.conversations.items.list(conv.id)] == ["msg_0_0"]


def test_the_agents_sdk_conversations_session_keeps_its_history_here(server):
    """The OpenAI Agents SDK's `OpenAIConversationsSession` (the session an
    agent keeps its memory in) on ctxgate: create, add, read, pop, clear."""
    import asyncio

    from agents.memory import OpenAIConversationsSession

    async def run():
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key=server.create_key("sdk-agents"), max_retries=0)
        session = OpenAIConversationsSession(openai_client=c)
        assert await session.get_items() == []
        await session.add_items([
            {"role": "user", "content": "Remember: the code is 1234."},
            {"type": "message", "role": "assistant", "status": "completed", "id": "msg_from_a_response",
             "content": [{"type": "output_text", "text": "Remembered.", "annotations": []}]},
            {"type": "function_call", "call_id": "call_9", "name": "save", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_9", "output": "ok"},
        ])
        items = await session.get_items()
        assert [i["type"] for i in items] == ["message", "message", "function_call", "function_call_output"]
        assert items[0]["content"][0]["text"] == "Remember: the code is 1234."
        assert items[1]["content"][0]["text"] == "Remembered."
        last_two = await session.get_items(limit=2)
        assert [i["type"] for i in last_two] == ["function_call", "function_call_output"]
        popped = await session.pop_item()
        assert popped["type"] == "function_call_output" and popped["output"] == "ok"
        assert [i["type"] for i in await session.get_items()] == ["message", "message", "function_call"]
        conversation_id = session.session_id
        await session.clear_session()
        with pytest.raises(openai.NotFoundError):
            await c.conversations.retrieve(conversation_id)

    asyncio.run(run())
