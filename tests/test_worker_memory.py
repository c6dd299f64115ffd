"""A served domain's built-in workers are forks of its warm template, not fresh Pythons.

Each fresh ``python -m fednb.domain.run.workers`` imports pandas, pyarrow, DuckDB and the built-ins
again (about 180 MB of its own and a second or more of CPU); a fork of the template shares those
pages with it copy-on-write. A template that cannot import what it warms dies quietly and every worker
falls back to a fresh Python, so the domain's memory at rest doubles without any error: this test
reads the process tree of a real server after a built-in ran through the HTTP API.
"""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import psutil

from tests.api_support import auth
from tests.conftest import start_live


def test_the_builtin_workers_of_a_served_domain_are_forks_of_its_template(tmp_path, alice_token):
    frame = pd.DataFrame({"age": np.arange(200) % 70 + 18, "x": np.linspace(0, 1, 200)})
    live = start_live(tmp_path, "warm", frame, alice_token)
    try:
        with httpx.Client(base_url=live.url, headers=auth(alice_token), timeout=60) as client:
            r = client.post("/v1/requests", params={"wait": 30},
                            json={"dataset": "patients", "kind": "builtin", "name": "mean", "args": {"column": "x"}})
            assert r.status_code == 201, r.text
            final = r.json()
            if final["status"] != "done":
                final = client.get(f"/v1/requests/{final['id']}", params={"wait": 30}).json()
            assert final["status"] == "done", final
        server = psutil.Process(live.server.proc.pid)
        tree = server.children(recursive=True)
        fresh = [p.pid for p in tree if "fednb.domain.run.workers" in " ".join(p.cmdline())]
        assert fresh == [], "a built-in worker was started as a fresh Python: the warm template is not working"
        forked = [p for p in tree if p.ppid() != server.pid]  # the template's children
        assert forked, [(p.pid, p.ppid(), p.cmdline()[:4]) for p in tree]
    finally:
        live.server.stop()
