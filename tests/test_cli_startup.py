"""The owner's everyday commands start without loading the data stack.

Listing, approving and describing a domain read SQLite and the policy; pandas, scipy, pyarrow,
formulaic and the web framework load only where data is touched or served. Checked on what each
command imports (in a fresh interpreter), not on how long it takes: timing lives in
``benchmarks/cli_startup.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fednb.demo import data
from fednb.models import RequestIn
from tests.conftest import make_domain

HEAVY = ("pandas", "numpy", "scipy", "pyarrow", "formulaic", "fastapi", "uvicorn", "duckdb", "torch", "httpx",
         "sqlalchemy", "alembic", "cryptography")
SIGNING = ("cryptography",)  # `info` prints the key's fingerprint: it may load the signing library, nothing else

# Runs one command as `fednb` would, then reports which heavy packages it had imported.
_PROBE = """
import json, sys
from fednb.cli import main
heavy = set(json.loads(sys.argv[2]))
sys.argv = ["fednb", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\nFEDNB-PROBE " + json.dumps({"code": code, "heavy": sorted(heavy & set(sys.modules))}))
"""


def _probe(*args: str) -> tuple[int, list[str], str]:
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(list(args)), json.dumps(HEAVY)],
                         capture_output=True, text=True, timeout=120)
    assert "FEDNB-PROBE " in out.stdout, out.stderr
    text, _, tail = out.stdout.rpartition("FEDNB-PROBE ")
    report = json.loads(tail)
    return report["code"], report["heavy"], text + out.stderr


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("startup")
    d = make_domain(root, "hospital-a", data.hospital("hospital-a"))
    d.receive("alice", RequestIn(dataset="patients", kind="function", name="f", code="def f(df):\n    return 1\n"))
    d.close()
    return root / "hospital-a"


def _pending(folder) -> list[str]:
    code, _, text = _probe("domain", "requests", str(folder), "--status", "pending", "--json")
    assert code in (0, None), text
    return [r["id"] for r in json.loads(text)]


@pytest.mark.parametrize("args", [["--help"], ["domain", "--help"]])
def test_help_loads_no_data_stack(args):
    code, heavy, text = _probe(*args)
    assert code in (0, None) and "Usage" in text
    assert heavy == []


def test_requests_info_and_approve_load_no_data_stack(folder):
    code, heavy, text = _probe("domain", "requests", str(folder))
    assert code in (0, None), text
    assert "pending" in text and "function:f" in text, text
    assert heavy == []

    code, heavy, text = _probe("domain", "info", str(folder))
    assert code in (0, None) and "hospital-a" in text, text
    assert set(heavy) <= set(SIGNING), heavy

    (pending,) = _pending(folder)
    code, heavy, text = _probe("domain", "approve", str(folder), pending[:8], "--reason", "reviewed")
    assert code in (0, None) and f"approved {pending}" in text, text
    assert heavy == []
    assert _pending(folder) == []


def test_show_deny_budget_and_audit_load_no_data_stack(folder, tmp_path):
    d = make_domain(tmp_path, "hospital-b", data.hospital("hospital-b"))
    d.receive("alice", RequestIn(dataset="patients", kind="function", name="g", code="def g(df):\n    return 2\n"))
    d.close()
    folder = tmp_path / "hospital-b"
    (pending,) = _pending(folder)
    for args, expected in [(("show", pending), "def g(df)"), (("deny", pending, "--reason", "no"), f"denied {pending}"),
                           (("budget",), "every budget is whole"), (("audit", "--tail", "3"), "deny"),
                           (("audit", "--verify"), "intact"), (("datasets",), "patients")]:
        code, heavy, text = _probe("domain", args[0], str(folder), *args[1:])
        assert code in (0, None) and expected in text, (args, text)
        assert heavy == [], (args, heavy)


def test_the_probe_sees_a_heavy_import(folder):
    """The checks above can fail: a command that reads the data does load pandas, and is reported."""
    code, heavy, text = _probe("domain", "mock-report", str(folder), "patients")
    assert code in (0, None), text
    assert "pandas" in heavy
