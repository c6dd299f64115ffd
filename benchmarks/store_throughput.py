"""Requests per second of one busy domain: SQLite with one server process (the default) next to
PostgreSQL with one and with several (``fednb domain serve --workers N``), in the same run.

Each of ``--analysts`` clients submits ``--requests`` exact built-ins at once and waits for each
result (the HTTP API, the store's transactions, the job runner and the release path: everything a
request passes through). No kills here: ``benchmarks/soak.py --postgres --workers 2`` is the crash soak.

    python benchmarks/store_throughput.py                       # 20 analysts x 10 requests
    python benchmarks/store_throughput.py --analysts 50 --requests 20 --workers 2

Prints one JSON line per configuration, then the ratios to SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from fednb.demo import data  # noqa: E402
from fednb.demo.local import create_domain  # noqa: E402
from fednb.domain.domain import new_token  # noqa: E402
from fednb.domain.process import DomainProcess  # noqa: E402

POLICY = {"max_pending_per_analyst = 50": "max_pending_per_analyst = 1000"}
KINDS = ({"name": "count", "args": {}}, {"name": "mean", "args": {"column": "age"}},
         {"name": "variance", "args": {"column": "bmi"}})


async def _analyst(url: str, token: str, requests: int, latencies: list[float], failures: list[str]) -> None:
    async with httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {token}"}) as http:
        for n in range(requests):
            body = {"dataset": "patients", "kind": "builtin", **KINDS[n % len(KINDS)]}
            started = time.monotonic()
            r = await http.post(f"{url}/v1/requests", json=body, params={"wait": 60})
            answer = r.json() if r.status_code == 201 else {"status": f"http {r.status_code}"}
            while answer.get("status") in ("approved", "running"):
                answer = (await http.get(f"{url}/v1/requests/{answer['id']}", params={"wait": 60})).json()
            latencies.append(time.monotonic() - started)
            if answer.get("status") != "done":
                failures.append(str(answer.get("status")))


def measure(root: Path, label: str, store: str | None, workers: int, analysts: int, requests: int) -> dict:
    tokens = [new_token() for _ in range(analysts)]
    d = create_domain(root, label, data.hospital("hospital-a"), "patients", policy_edits=POLICY, store=store)
    for i, token in enumerate(tokens):
        d.invite(f"analyst-{i:03d}", token=token)
    d.close()
    server = DomainProcess(root / label, extra_args=["--workers", str(workers)] if workers > 1 else None)
    server.start()
    latencies: list[float] = []
    failures: list[str] = []
    try:
        async def crowd() -> None:
            await asyncio.gather(*(_analyst(server.url, t, requests, latencies, failures) for t in tokens))

        started = time.monotonic()
        asyncio.run(crowd())
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    lat = sorted(latencies)
    return {"throughput": label, "store": "postgresql" if store else "sqlite", "workers": workers,
            "requests": len(lat), "not_done": len(failures), "seconds": round(elapsed, 2),
            "requests_per_s": round(len(lat) / elapsed, 2), "latency_median_s": round(statistics.median(lat), 3),
            "latency_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3)}


def new_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analysts", type=int, default=20)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from tests.postgres_server import running_postgres

    with tempfile.TemporaryDirectory(prefix="fednb-throughput-") as tmp, \
            running_postgres(Path(tmp) / "postgres") as admin:
        root = Path(tmp)
        runs = [measure(root, "sqlite-1", None, 1, args.analysts, args.requests),
                measure(root, "postgresql-1", new_database(admin, "throughput_1"), 1, args.analysts, args.requests),
                measure(root, f"postgresql-{args.workers}", new_database(admin, "throughput_n"), args.workers,
                        args.analysts, args.requests)]
    for record in runs:
        print(json.dumps(record), flush=True)
    base = runs[0]["requests_per_s"]
    print(json.dumps({"throughput": "ratio_to_sqlite_1", **{r["throughput"]: round(r["requests_per_s"] / base, 2)
                                                           for r in runs[1:]}}), flush=True)
    return 1 if any(r["not_done"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
