"""The OpenAPI contract: schemathesis against the local server.

schemathesis reads openapi.yaml and sends generated requests (schema examples,
boundary values, random data, valid and invalid, then sequences that follow
the document's links: create, read, update, delete) to every operation of a
real `ctxgate serve` on the embedded store, with a key holding every scope (`mcp` too, so `/mcp` is fuzzed past
its auth).
It fails on any 5xx, on a status code the document does not list, on a
response whose content type, headers or body do not match the document, on
an undocumented method that is not a 405 with `Allow`, and on an operation
that answers without its credentials.

The Responses routes are covered like the rest: schemathesis.toml has half
of the generated `POST /v1/responses` (and `input_tokens`) bodies name the
`echo` model, so stored responses exist for the links to GET, DELETE and
list the input items of; its `stream` examples exercise the event stream.

Not enabled: `positive_data_acceptance` (opaque cursors, unknown models and
the 366-day usage window are valid per the schema and still refused).

The run is bounded (`CTXGATE_SCHEMATHESIS_EXAMPLES` per operation, default 30)
and seeded (`CTXGATE_SCHEMATHESIS_SEED`, default 1) so a failure replays.
"""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
    "missing_required_header",
    "ignored_auth",
    "negative_data_rejection",
])


def test_schemathesis_finds_no_contract_violation(server, tmp_path):
    key = server.create_key(
        "schemathesis", "chat", "conversations:read", "conversations:write", "usage:read", "admin", "mcp")
    examples = os.environ.get("CTXGATE_SCHEMATHESIS_EXAMPLES", "30")
    seed = os.environ.get("CTXGATE_SCHEMATHESIS_SEED", "1")
    cli = pathlib.Path(sys.executable).with_name("schemathesis")
    origin = server.base_url.removesuffix("/v1")
    cmd = [
        str(cli), "--config-file", str(ROOT / "tests" / "python" / "schemathesis.toml"),
        "run", str(ROOT / "openapi.yaml"),
        "--url", origin,
        "--header", f"Authorization: Bearer {key}",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", examples,
        "--seed", seed,
        # One worker: the run is then the same for a seed, and two workers
        # race in Hypothesis's shared caches (a spurious FlakyFailure).
        "--workers", "1",
        "--request-timeout", "30",
        "--suppress-health-check", "all",
        "--report-dir", str(tmp_path / "report"),
    ]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    report = out.stdout + out.stderr
    generated = re.search(r"(\d+) generated", report)
    print(f"schemathesis: {generated.group(1) if generated else '?'} test cases, seed {seed}")
    assert out.returncode == 0, report
    assert generated and int(generated.group(1)) > 0, report
