"""Fuzzing the domain API from its own OpenAPI schema (schemathesis + hypothesis) through a real server.

Every operation gets schemathesis' coverage cases (boundary values, wrong types, missing parameters,
unexpected methods; each sent with no token, an analyst's and the owner's), then random valid
(positive) and schema-violating (negative) requests, each sent with one of: no token, a garbage
token, a garbage header, a revoked token, analyst A, analyst B, the owner. No answer may be a 5xx,
carry a traceback or a path on the owner's machine, or be a 4xx without a JSON sentence saying why; every
2xx must match the response schema the API documents.
The seed is fixed so that CI is repeatable; ``FEDNB_FUZZ_SEED`` and ``FEDNB_FUZZ_EXAMPLES`` run a
different or bigger campaign.
"""

from __future__ import annotations

import os
import string

import httpx
import pytest
import requests

from fednb.demo import data
from fednb.domain import Domain
from tests.api_support import auth, error_problems
from tests.conftest import start_live

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance  # noqa: E402

EXAMPLES = int(os.environ.get("FEDNB_FUZZ_EXAMPLES", "90"))  # per operation and mode; with coverage ~3,000
SEED = int(os.environ.get("FEDNB_FUZZ_SEED", "20261123"))
MIN_CASES = 2000 if "FEDNB_FUZZ_EXAMPLES" not in os.environ else 1
CONFORMANCE = [response_schema_conformance, content_type_conformance]
HEADER_TEXT = "".join(c for c in string.printable if c not in "\t\r\n\x0b\x0c")


@pytest.fixture(scope="module")
def target(tmp_path_factory, alice_token):
    root = tmp_path_factory.mktemp("fuzz")
    # Garbage tokens are half of what the fuzzer sends: do not let the address lock-out (tested on
    # its own in test_authorization.py) turn the rest of the campaign into 429s.
    live = start_live(root, "fuzzed", data.hospital("hospital-a"), alice_token,
                      policy_edits={"failed_token_limit = 20": "failed_token_limit = 1000000"})
    d = Domain(live.path)
    tokens = {"alice": live.token, "bob": d.invite("bob"), "owner": live.owner_token}
    tokens["revoked"] = d.invite("rex")
    d.revoke("rex")
    d.close()
    schema = httpx.get(live.url + "/openapi.json").json()
    yield live, schema, tokens, root
    live.server.stop()


def _authorization(tokens: dict[str, str]):
    """Headers: none, each real token, garbage tokens, garbage that is not even a Bearer header."""
    garbage = st.text(HEADER_TEXT, max_size=80).map(str.strip)
    bearer = st.one_of(st.sampled_from(list(tokens.values())), garbage.map(lambda t: "fednb_" + t), garbage)
    return st.one_of(st.just({}), bearer.map(lambda t: {"Authorization": f"Bearer {t}"}),
                     garbage.map(lambda t: {"Authorization": t}))


def test_fuzz_the_api_from_its_schema(target):
    live, raw_schema, tokens, root = target
    schema = schemathesis.openapi.from_dict(raw_schema)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    session = requests.Session()
    private = (str(root), str(live.path))
    cases: dict[str, int] = {}
    failures: list[str] = []

    def send(label: str, case, headers: dict) -> None:
        response = case.call(base_url=live.url, session=session, headers=headers, timeout=30)
        cases[label] = cases.get(label, 0) + 1
        problems = error_problems(response.status_code, response.headers, response.text, private=private)
        if response.status_code < 300:  # what the schema documents is what comes back
            try:
                case.validate_response(response, checks=CONFORMANCE)
            except Exception as exc:  # schemathesis raises its own failure types, grouped
                problems.append(f"does not match the documented response: {str(exc)[:300]}")
        for problem in problems:
            if len(failures) < 50:
                failures.append(f"{label}: {problem}: {case.as_curl_command(headers=headers)}"
                                f" with {headers} -> {response.text[:200]}")

    for op in operations:
        # boundary values, wrong types, missing parameters, unexpected methods: deterministic
        generation = schema.config.generation_for(operation=op, phase="coverage")
        for case in schema.iter_coverage_cases(op, generation_modes=generation.modes,
                                               generation_config=generation):
            for token in (None, tokens["alice"], tokens["owner"]):
                send(f"{op.label} [coverage]", case, auth(token) if token else {})
        # random valid and invalid requests
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            label = f"{op.label} [{mode.value}]"

            @seed(SEED)
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(mode), headers=_authorization(tokens))
            def one(case, headers):
                send(label, case, headers)

            try:
                one()
            except Unsatisfiable:  # negative mode of an operation without parameters: nothing to break
                assert mode == schemathesis.GenerationMode.NEGATIVE, label

    total = sum(cases.values())
    print(f"\nfuzzed {total} cases over {len(operations)} operations: {cases}")
    assert not failures, "\n".join(failures)
    assert total >= MIN_CASES
    assert all(op.label in " ".join(cases) for op in operations)
    # the server is still healthy afterwards
    assert httpx.get(live.url + "/v1/info").status_code == 200
    assert "Traceback" not in (live.path / "server.log").read_text()
