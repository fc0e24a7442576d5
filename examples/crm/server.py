"""A small CRM exposed as an MCP server, for ctxgate's MCP tools (issue 15).

Three tools over deterministic in-memory data: `get_customer`, `list_orders`
and `search_kb`. Built with the official Python SDK (`mcp==2.3.0`), served over
Streamable HTTP on one path, `/mcp`, in one of two modes:

- `current`: protocol revision 2026-07-28 only. Stateless: no `initialize`, no
  session id; every request carries its protocol version (header and
  `params._meta`), and `server/discover` tells what the server speaks. Requests
  of an older revision are refused with JSON-RPC error -32022 (unsupported
  protocol version), which names the supported one.
- `legacy`: revisions 2025-11-25 and earlier, on the SDK's stateful session
  manager: `initialize` opens a session whose `Mcp-Session-Id` later requests
  carry. Requests of revision 2026-07-28 are refused with a 400, as servers of
  those revisions answer a version they do not know.

mcp 2.x serves both eras from one app (it routes on the `MCP-Protocol-Version`
header); each mode here shuts the other era out, so that a client's choice of
revision, and its fallback, can be tested against a server that really speaks
one era only.

Once it listens, it prints exactly one line, `listening on http://HOST:PORT/mcp`,
to stdout. With `--token`, every request needs `Authorization: Bearer TOKEN`.

    python examples/crm/server.py --port 8765 --mode current --token s3cret
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
import socket
import sys
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from mcp_types.jsonrpc import INVALID_REQUEST, UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

# ---------------------------------------------------------------------------
# The data: fixed, so that tests can check exact answers.


class Customer(BaseModel):
    """A customer record."""

    customer_id: str
    name: str
    email: str
    tier: str = Field(description="Support tier: standard, gold or platinum")
    since: str = Field(description="Customer since (YYYY-MM-DD)")


class Order(BaseModel):
    """One order of a customer."""

    order_id: str
    status: str = Field(description="open, shipped, delivered or cancelled")
    placed: str = Field(description="Order date (YYYY-MM-DD)")
    total: str = Field(description="Total with currency, e.g. 'EUR 129.90'")
    items: list[str]


class Orders(BaseModel):
    """A customer's orders, newest first."""

    customer_id: str
    status: str | None = Field(description="The status filter applied, if any")
    orders: list[Order]


class Article(BaseModel):
    """A knowledge-base article."""

    article_id: str
    title: str
    summary: str
    score: int = Field(description="How many of the query's words the article matches (as words or their beginnings)")


class Articles(BaseModel):
    """Knowledge-base articles matching a query, best first."""

    query: str
    articles: list[Article]


CUSTOMERS: dict[str, Customer] = {
    c.customer_id: c
    for c in [
        Customer(customer_id="c-1001", name="Ada Lovelace", email="ada@example.com", tier="platinum", since="2019-03-14"),
        Customer(customer_id="c-1002", name="Grace Hopper", email="grace@example.com", tier="gold", since="2020-07-01"),
        Customer(customer_id="c-1003", name="Alan Turing", email="alan@example.com", tier="standard", since="2022-11-23"),
        Customer(customer_id="c-1004", name="Katherine Johnson", email="katherine@example.com", tier="gold", since="2023-02-08"),
    ]
}

ORDERS: dict[str, list[Order]] = {
    "c-1001": [
        Order(order_id="o-5003", status="open", placed="2026-11-20", total="EUR 89.00", items=["USB-C dock"]),
        Order(order_id="o-5002", status="shipped", placed="2026-11-02", total="EUR 129.90", items=["Mechanical keyboard", "Wrist rest"]),
        Order(order_id="o-5001", status="delivered", placed="2026-09-15", total="EUR 1499.00", items=["Laptop 14\""]),
    ],
    "c-1002": [
        Order(order_id="o-5101", status="delivered", placed="2026-10-10", total="EUR 59.50", items=["Noise-cancelling earbuds"]),
        Order(order_id="o-5100", status="cancelled", placed="2026-08-30", total="EUR 349.00", items=["27\" monitor"]),
    ],
    "c-1003": [],
    "c-1004": [
        Order(order_id="o-5200", status="open", placed="2026-11-25", total="EUR 24.99", items=["HDMI cable", "Cable ties"]),
    ],
}

ORDER_STATUSES = ("open", "shipped", "delivered", "cancelled")

KB: list[tuple[str, str, str]] = [
    ("kb-101", "Returning an item", "Items can be returned within 30 days of delivery for a full refund. Start a return from the order page; we email a prepaid label."),
    ("kb-102", "Refund timing", "Refunds reach the original payment method 3 to 5 business days after the returned item arrives at our warehouse."),
    ("kb-103", "Shipping times", "Standard shipping takes 2 to 4 business days; express shipping arrives the next business day when ordered before 14:00."),
    ("kb-104", "Tracking an order", "Every shipped order has a tracking link in the shipping confirmation email and on the order page."),
    ("kb-105", "Cancelling an order", "Open orders can be cancelled from the order page until they ship; shipped orders must be returned instead."),
    ("kb-106", "Warranty claims", "Hardware has a two-year warranty. Platinum customers get an advance replacement shipped before the faulty item is returned."),
    ("kb-107", "Changing the delivery address", "The delivery address of an open order can be changed until it ships; contact support for shipped orders."),
    ("kb-108", "Support tiers", "Standard customers get email support; gold adds phone support; platinum adds a named account manager."),
]

WORD = re.compile(r"[a-z0-9]+")
# Words too common to say what an article is about.
STOP_WORDS = frozenset(
    "a an and are be can do does for from how i in is it my of on or the to what when where why with".split()
)


def words(text: str) -> set[str]:
    """Lower-case words of `text` without stop words, a trailing plural `s` dropped ("returns" finds "return")."""
    found = (w[:-1] if len(w) > 3 and w.endswith("s") else w for w in WORD.findall(text.lower()))
    return {w for w in found if w not in STOP_WORDS}


def unknown_customer(customer_id: str) -> ToolError:
    """The error result for an id that is not in the CRM, naming the ids that are."""
    known = ", ".join(CUSTOMERS)
    return ToolError(f"Unknown customer_id {customer_id!r}. Known customers: {known}.")


# ---------------------------------------------------------------------------
# Test aids, off unless asked for on the command line: they let a gateway's tests
# make a tool hang, and prove that calls run concurrently, without timing anything.


class TestAids:
    """`--hang TOOL`: calls of TOOL never answer. `--rendezvous N`: the first N calls wait
    until all N are in flight together, so that N calls made one after the other never finish."""

    def __init__(self) -> None:
        self.hanging: set[str] = set()
        self.rendezvous = 0
        self.arrived = 0
        self.met: anyio.Event | None = None

    async def before_call(self, tool: str) -> None:
        if tool in self.hanging:
            await anyio.sleep_forever()
        if self.arrived < self.rendezvous:
            self.arrived += 1
            if self.met is None:
                self.met = anyio.Event()
            if self.arrived == self.rendezvous:
                self.met.set()
            await self.met.wait()


TEST_AIDS = TestAids()


# ---------------------------------------------------------------------------
# The tools.


async def get_customer(
    customer_id: Annotated[str, Field(description="The customer's id, e.g. 'c-1001'")],
) -> Annotated[CallToolResult, Customer]:
    """Look up one customer by id: name, email, support tier and customer-since date."""
    await TEST_AIDS.before_call("get_customer")
    customer = CUSTOMERS.get(customer_id)
    if customer is None:
        raise unknown_customer(customer_id)
    text = f"{customer.name} <{customer.email}>, {customer.tier} tier, customer since {customer.since} (id {customer.customer_id})"
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=customer.model_dump(mode="json"))


async def list_orders(
    customer_id: Annotated[str, Field(description="The customer's id, e.g. 'c-1001'")],
    status: Annotated[
        str | None, Field(description="Only orders in this status: open, shipped, delivered or cancelled")
    ] = None,
) -> Annotated[CallToolResult, Orders]:
    """List a customer's orders, newest first, optionally only those in one status."""
    await TEST_AIDS.before_call("list_orders")
    if customer_id not in CUSTOMERS:
        raise unknown_customer(customer_id)
    if status is not None and status not in ORDER_STATUSES:
        raise ToolError(f"Unknown status {status!r}; use one of: {', '.join(ORDER_STATUSES)}.")
    orders = [o for o in ORDERS[customer_id] if status is None or o.status == status]
    result = Orders(customer_id=customer_id, status=status, orders=orders)
    if orders:
        lines = [f"{o.order_id} ({o.placed}, {o.status}): {', '.join(o.items)} - {o.total}" for o in orders]
        text = f"{len(orders)} order(s) of {customer_id}:\n" + "\n".join(lines)
    else:
        text = f"No {status + ' ' if status else ''}orders for {customer_id}."
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json"))


async def search_kb(
    query: Annotated[str, Field(description="Words to look for, e.g. 'refund after return'")],
    limit: Annotated[int, Field(description="At most this many articles", ge=1, le=10)] = 3,
) -> Annotated[CallToolResult, Articles]:
    """Search the support knowledge base; articles matching more of the query's words come first."""
    await TEST_AIDS.before_call("search_kb")
    wanted = words(query)
    scored = []
    for article_id, title, body in KB:
        present = words(title + " " + body)
        # A query word matches an article word it begins ("cancel" finds "cancelling").
        score = sum(1 for w in wanted if any(p.startswith(w) for p in present))
        if score:
            scored.append(Article(article_id=article_id, title=title, summary=body, score=score))
    # Deterministic: more matched words first, then the article id.
    scored.sort(key=lambda a: (-a.score, a.article_id))
    found = scored[:limit]
    result = Articles(query=query, articles=found)
    if found:
        text = "\n".join(f"[{a.article_id}] {a.title}: {a.summary}" for a in found)
    else:
        text = f"No article matches {query!r}."
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json"))


def build(tools_ttl_ms: int) -> MCPServer:
    """The MCP server with the three tools; tool lists may be reused for `tools_ttl_ms` (2026-07-28 only)."""
    server = MCPServer(
        name="crm",
        version="1.0.0",
        instructions="Customer records, orders and the support knowledge base of an example shop.",
        log_level="WARNING",
        # The tools never change while the server runs; without a hint the SDK says ttlMs 0.
        cache_hints={"tools/list": CacheHint(ttl_ms=tools_ttl_ms)},
    )
    server.add_tool(get_customer, title="Get a customer")
    server.add_tool(list_orders, title="List a customer's orders")
    server.add_tool(search_kb, title="Search the knowledge base")
    return server


# ---------------------------------------------------------------------------
# Serving: the bearer check and the era gate around the SDK's app.


async def respond(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Send a whole JSON response."""
    data = json.dumps(body, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


class Gate:
    """ASGI middleware: the bearer token, then the protocol era the mode serves."""

    def __init__(self, app: Any, mode: str, token: str | None):
        self.app = app
        self.mode = mode
        self.expected = f"Bearer {token}".encode() if token is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.expected is not None and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
            await respond(
                send,
                401,
                {"error": "unauthorized", "message": "a valid Authorization: Bearer token is required"},
                [(b"www-authenticate", b'Bearer realm="crm"')],
            )
            return
        version = headers.get(b"mcp-protocol-version", b"").decode("latin-1") or None
        if self.mode == "current" and version not in MODERN_PROTOCOL_VERSIONS and scope["method"] == "POST":
            # What a 2026-07-28-only server answers a handshake-era client: the
            # versions it does serve, so the client can switch (or give up).
            requested = version or await self.body_version(receive) or ""
            await respond(
                send,
                400,
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": UNSUPPORTED_PROTOCOL_VERSION,
                        "message": "Unsupported protocol version",
                        "data": {"supported": list(MODERN_PROTOCOL_VERSIONS), "requested": requested},
                    },
                },
            )
            return
        if self.mode == "legacy" and version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            # What a server of the handshake era answers a version it does not know.
            supported = ", ".join(HANDSHAKE_PROTOCOL_VERSIONS)
            await respond(
                send,
                400,
                {
                    "jsonrpc": "2.0",
                    "id": "server-error",
                    "error": {
                        "code": INVALID_REQUEST,
                        "message": f"Bad Request: Unsupported protocol version: {version}. Supported versions: {supported}",
                    },
                },
            )
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def body_version(receive: Any) -> str | None:
        """The protocol version an `initialize` body offers, if the body is one."""
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            body = json.loads(b"".join(chunks))
            return body["params"]["protocolVersion"] if body.get("method") == "initialize" else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class Server(uvicorn.Server):
    """uvicorn, announcing its URL once it accepts connections."""

    def __init__(self, config: uvicorn.Config, url: str):
        super().__init__(config)
        self.url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            print(f"listening on {self.url}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An example CRM as an MCP server (Streamable HTTP at /mcp).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default 8765)")
    parser.add_argument(
        "--mode",
        choices=["current", "legacy"],
        default="current",
        help="current: 2026-07-28, stateless; legacy: 2025-11-25 and earlier, initialize + Mcp-Session-Id",
    )
    parser.add_argument("--token", help="require Authorization: Bearer TOKEN on every request")
    parser.add_argument("--hang", action="append", default=[], metavar="TOOL", help="test aid: calls of TOOL never answer")
    parser.add_argument(
        "--rendezvous",
        type=int,
        default=0,
        metavar="N",
        help="test aid: the first N tool calls answer only once all N are in flight together",
    )
    parser.add_argument(
        "--tools-ttl-ms",
        type=int,
        default=60_000,
        help="the ttlMs hint of tools/list answers in current mode (default 60000; 0: do not reuse)",
    )
    args = parser.parse_args(argv)

    if args.tools_ttl_ms < 0:
        parser.error("--tools-ttl-ms must be 0 or more")
    unknown = sorted(set(args.hang) - {"get_customer", "list_orders", "search_kb"})
    if unknown:
        parser.error(f"--hang: no tool {', '.join(unknown)}")
    TEST_AIDS.hanging = set(args.hang)
    TEST_AIDS.rendezvous = max(args.rendezvous, 0)
    app = build(args.tools_ttl_ms).streamable_http_app(stateless_http=args.mode == "current", host=args.host)
    # Bind first, so that port 0 is resolved before the URL is announced.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    config = uvicorn.Config(Gate(app, args.mode, args.token), log_level="warning", lifespan="on")
    Server(config, f"http://{host}:{port}/mcp").run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
