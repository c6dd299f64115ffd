"""Crash and load soak: many analysts against several domains while the domains are killed (kill -9) and
restarted at random. Afterwards every accepted request is in its domain's store with exactly one final
state (or is still pending review), every released result is in the audit log, and each audit log
verifies. Traffic goes to 127.0.0.1 only; counts and time are bounded.

    python benchmarks/soak.py                          # the CI size: 50 analysts x 20 requests, 3 domains, 20 kills
    python benchmarks/soak.py --analysts 200 --requests 50 --kills 60
    python benchmarks/soak.py --postgres --workers 2   # stores on a throwaway PostgreSQL, 2 processes per domain

Prints JSON lines: the configuration, the traffic counts, the durability checks and the timings.
``tests/test_soak.py`` runs :func:`run_soak` at the CI size and asserts the checks.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from fednb.demo import data  # noqa: E402
from fednb.demo.processes import command_line, descendants  # noqa: E402
from fednb.domain import Domain  # noqa: E402
from fednb.domain.domain import new_token  # noqa: E402
from fednb.domain.process import DomainProcess  # noqa: E402
from fednb.models import FINAL_STATUSES  # noqa: E402

TERMINAL_ACTIONS = ("deny", "release", "block", "fail")
# What must be 0 after the storm.
INVARIANTS = ("lost", "duplicate_submissions", "final_without_one_audit_end", "pending_with_an_audit_end",
              "stuck_approved_or_running", "released_not_audited", "audited_release_not_done",
              "store_requests_nobody_saw_accepted", "audit_verify_failed", "budget_overspent", "spend_not_audited",
              "job_run_twice")
# Jobs run fast and fail fast here; the soak is about what survives a crash, not about long jobs.
POLICY = {"wall_seconds = 120": "wall_seconds = 10", "cpu_seconds = 60": "cpu_seconds = 5",
          "max_pending_per_analyst = 50": "max_pending_per_analyst = 1000",
          # counts are noisy and each analyst's budget covers only a few: budgets run out mid-storm
          "noisy = []": 'noisy = ["count"]', "epsilon = 3.0": "epsilon = 0.2",
          # the sandbox runs from the start (not only after a custom job), so every kill -9 is a check
          # that no sandbox process outlives its server
          "\nidle_seconds = 120": "\nidle_seconds = 0"}


@dataclass
class SoakConfig:
    domains: int = 3
    analysts: int = 50
    requests_per_analyst: int = 20
    kills: int = 20
    function_share: float = 0.15     # custom functions wait for the owner; the rest are built-ins
    think_s: tuple[float, float] = (0.2, 1.4)      # an analyst's pause between requests
    kill_every_s: tuple[float, float] = (0.3, 1.2)
    # A restarted domain serves this long before it may be killed again. Without it, on a loaded
    # machine (restarts of seconds), the killer took each domain down again within 0.3 s of its
    # return, and an analyst retrying one submission found it down for all of give_up_s: that
    # measured the kill schedule, not the domain. Every kill still lands while traffic flows.
    min_up_s: float = 2.0
    give_up_s: float = 120.0         # an analyst stops retrying one submission after this long
    settle_s: float = 90.0           # after the storm: time for queued jobs to finish
    seed: int = 8
    postgres: str | None = None      # a PostgreSQL admin URL: each domain's store is a new database there
    workers: int = 1                 # server processes per domain (more than 1 needs postgres)


@dataclass
class Accepted:
    domain: int
    id: str
    analyst: str
    key: str
    kind: str


@dataclass
class Traffic:
    accepted: list[Accepted] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)        # 4xx answers to a submission, by status
    server_errors: int = 0                                   # 5xx answers (must stay 0)
    transport_errors: int = 0                                # connection refused/reset while a domain was down
    transport_kinds: Counter = field(default_factory=Counter)  # those errors by kind (ConnectError, ReadTimeout...)
    retried_submissions: int = 0
    gave_up: int = 0
    submit_latency_s: list[float] = field(default_factory=list)
    answer_latency_s: list[float] = field(default_factory=list)  # the one POST that was answered, alone
    polls: int = 0
    decisions: Counter = field(default_factory=Counter)
    kills: list[tuple[float, int]] = field(default_factory=list)
    sandboxes: set[int] = field(default_factory=set)         # fork servers of the killed domains
    restart_s: list[float] = field(default_factory=list)
    traffic_end: float = 0.0


# -- setting up ------------------------------------------------------------------------------------
def make_domains(root: Path, cfg: SoakConfig) -> tuple[list[Path], list[str], list[str]]:
    """``cfg.domains`` domain folders, one token per analyst (the same on every domain), an owner token each."""
    tokens = [new_token() for _ in range(cfg.analysts)]
    owners, paths = [], []
    frames = [data.hospital(name) for name in data.HOSPITALS]
    for i in range(cfg.domains):
        store = new_database(cfg.postgres, f"soak_{i}_{random.randrange(10**9)}") if cfg.postgres else None
        d = Domain.init(root / f"soak-{i}", f"soak-{i}", "a domain of the soak test", store=store)
        text = (d.path / "policy.toml").read_text()
        for old, new in POLICY.items():
            text = text.replace(old, new)
        (d.path / "policy.toml").write_text(text)
        d = Domain(d.path)
        csv = root / f"soak-{i}.csv"
        frames[i % len(frames)].to_csv(csv, index=False)
        d.add_dataset(csv, "patients", "synthetic patients")
        for a, token in enumerate(tokens):
            d.invite(f"analyst-{a:02d}", token=token)
        owners.append(d.invite("owner", role="owner"))
        paths.append(d.path)
        d.close()
    return paths, tokens, owners


def new_database(admin_url: str, name: str) -> str:
    """A new, empty database on the PostgreSQL server of ``admin_url``; returns its URL."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def start_all(paths: list[Path], workers: int = 1) -> list[DomainProcess]:
    servers = [DomainProcess(p, extra_args=["--workers", str(workers)] if workers > 1 else None) for p in paths]
    threads = [threading.Thread(target=s.start) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in servers:
        if not s.alive():
            raise RuntimeError(f"a soak domain did not start; see {s.path / 'server.log'}")
    return servers


# -- the storm ---------------------------------------------------------------------------------------
def _request(rng: random.Random, cfg: SoakConfig, analyst: int, n: int) -> dict:
    if rng.random() < cfg.function_share:
        code = f"def soak(df):\n    return float(df['age'].mean()) + {analyst * 1000 + n}\n"
        return {"dataset": "patients", "kind": "function", "name": "soak", "code": code,
                "description": f"soak request {n} of analyst {analyst}"}
    kind = rng.choice(["count", "mean", "histogram", "variance"])
    where = [{"column": "age", "op": ">", "value": rng.randint(18, 95)}]
    args = {"count": {"where": where}, "mean": {"column": "bmi", "where": where},
            "variance": {"column": "systolic_bp"}, "histogram": {"column": "age", "bins": [18, 40, 60, 80, 96]}}
    return {"dataset": "patients", "kind": "builtin", "name": kind, "args": args[kind]}


async def _analyst(i: int, cfg: SoakConfig, urls: list[str], token: str, traffic: Traffic) -> None:
    rng = random.Random(cfg.seed * 100_003 + i)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=3.0), headers=headers) as http:
        for n in range(cfg.requests_per_analyst):
            await asyncio.sleep(rng.uniform(*cfg.think_s))
            d = rng.randrange(len(urls))
            key = f"a{i:03d}-r{n:04d}"
            body = {**_request(rng, cfg, i, n), "idempotency_key": key}
            started, tries = time.monotonic(), 0
            while True:
                tries += 1
                try:
                    sent = time.monotonic()
                    r = await http.post(f"{urls[d]}/v1/requests", json=body)
                    traffic.answer_latency_s.append(time.monotonic() - sent)
                except httpx.TransportError as exc:  # the domain is down or died mid-request: same key again
                    traffic.transport_errors += 1
                    traffic.transport_kinds[type(exc).__name__] += 1
                    if time.monotonic() - started > cfg.give_up_s:
                        traffic.gave_up += 1
                        break
                    await asyncio.sleep(rng.uniform(0.1, 0.4))
                    continue
                if r.status_code >= 500:
                    traffic.server_errors += 1
                    await asyncio.sleep(0.2)
                    continue
                if r.status_code == 201:
                    req = r.json()
                    traffic.accepted.append(Accepted(d, req["id"], req["analyst"], key, body["kind"]))
                    traffic.submit_latency_s.append(time.monotonic() - started)
                    if rng.random() < 0.3:  # follow it for a while, as a notebook would
                        try:
                            await http.get(f"{urls[d]}/v1/requests/{req['id']}", params={"wait": 1})
                            traffic.polls += 1
                        except httpx.TransportError:
                            traffic.transport_errors += 1
                else:
                    traffic.refused[r.status_code] += 1
                break
            traffic.retried_submissions += tries > 1


async def _owner(d: int, cfg: SoakConfig, url: str, token: str, traffic: Traffic, stop: asyncio.Event) -> None:
    rng = random.Random(cfg.seed * 7919 + d)
    async with httpx.AsyncClient(timeout=10.0, headers={"Authorization": f"Bearer {token}"}) as http:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            try:
                pending = (await http.get(f"{url}/v1/requests", params={"status": "pending", "limit": 10})).json()
                for req in pending[:5]:
                    if rng.random() < 0.7:
                        r = await http.post(f"{url}/v1/requests/{req['id']}/approve", json={"reason": "soak"})
                    else:
                        r = await http.post(f"{url}/v1/requests/{req['id']}/deny", json={"reason": "soak: no"})
                    traffic.decisions[r.status_code] += 1
            except (httpx.TransportError, ValueError):
                continue


async def _killer(cfg: SoakConfig, servers: list[DomainProcess], traffic: Traffic, t0: float) -> None:
    rng = random.Random(cfg.seed * 31 + 1)
    restarting: set[int] = set()
    up_since = [time.monotonic()] * len(servers)
    restarts = []

    async def restart(d: int) -> None:
        started = time.monotonic()
        await asyncio.to_thread(servers[d].restart)
        traffic.restart_s.append(time.monotonic() - started)
        up_since[d] = time.monotonic()
        restarting.discard(d)

    def killable() -> list[int]:
        now = time.monotonic()
        return [i for i in range(len(servers)) if i not in restarting and now - up_since[i] >= cfg.min_up_s]

    for _ in range(cfg.kills):
        await asyncio.sleep(rng.uniform(*cfg.kill_every_s))
        while not killable():
            await asyncio.sleep(0.05)
        d = rng.choice(killable())
        restarting.add(d)
        traffic.sandboxes |= sandbox_processes(servers[d].pid)
        await asyncio.to_thread(servers[d].kill)  # SIGKILL: no chance to clean up
        traffic.kills.append((time.monotonic() - t0, d))
        restarts.append(asyncio.create_task(restart(d)))
    await asyncio.gather(*restarts)


async def storm(cfg: SoakConfig, servers: list[DomainProcess], tokens: list[str], owners: list[str]) -> Traffic:
    traffic = Traffic()
    urls = [s.url for s in servers]
    stop = asyncio.Event()
    t0 = time.monotonic()
    owner_tasks = [asyncio.create_task(_owner(d, cfg, urls[d], owners[d], traffic, stop)) for d in range(len(urls))]
    killer = asyncio.create_task(_killer(cfg, servers, traffic, t0))
    await asyncio.gather(*(_analyst(i, cfg, urls, tokens[i], traffic) for i in range(cfg.analysts)))
    traffic.traffic_end = time.monotonic() - t0
    await killer
    stop.set()
    await asyncio.gather(*owner_tasks)
    return traffic


# -- afterwards ------------------------------------------------------------------------------------
def _connect(path: Path):
    """A connection to the domain's store (SQLite or PostgreSQL), rows by position and by name."""
    from fednb.domain.store.database import Store

    return Store.of_folder(path).connect()


def settle(paths: list[Path], timeout: float) -> int:
    """Wait until no request is approved or running (queued jobs ran); returns how many still are."""
    deadline = time.monotonic() + timeout
    while True:
        busy = 0
        for p in paths:
            conn = _connect(p)
            busy += conn.execute("SELECT count(*) FROM requests WHERE status IN ('approved', 'running')").fetchone()[0]
            conn.close()
        if busy == 0 or time.monotonic() > deadline:
            return busy
        time.sleep(0.2)


def _budget_counts(conn, path: Path) -> Counter:
    """No analyst spent more epsilon than the policy allows, and every spend is in the audit log."""
    from fednb.domain.review.policy import load_policy

    privacy = load_policy(path / "policy.toml").privacy
    counts: Counter = Counter()
    spent = conn.execute("SELECT analyst, dataset, sum(epsilon), count(*) FROM privacy_spend GROUP BY analyst, dataset")
    for analyst, dataset, epsilon, _ in spent:
        counts["budget_overspent"] += epsilon > privacy.allowance(analyst, dataset).epsilon + 1e-9
    counts["refused_by_budget"] += conn.execute(
        "SELECT count(*) FROM requests WHERE status = 'blocked' AND reason LIKE '%epsilon left%'").fetchone()[0]
    rows = conn.execute("SELECT count(*) FROM privacy_spend").fetchone()[0]
    audited = conn.execute("SELECT count(*) FROM audit WHERE action = 'spend'").fetchone()[0]
    counts["spend_not_audited"] += rows != audited
    return counts


def _runs_beyond_requeues(conn) -> int:
    """Jobs started more often than a crash re-queued them: a job two processes (or lanes) both ran."""
    starts: Counter = Counter()
    for action, payload in conn.execute("SELECT action, payload_json FROM audit WHERE action IN ('run', 'requeue')"):
        job = json.loads(payload).get("job")
        starts[job] += 1 if action == "run" else -1
    return sum(1 for n in starts.values() if n > 1)


def check(paths: list[Path], traffic: Traffic) -> dict:
    """The durability invariants, counted. Every count but the totals must be 0.

    A new invariant is one more count computed here from the stores and the accepted list.
    """
    counts = Counter()
    final_states: Counter = Counter()
    by_domain: dict[int, list[Accepted]] = {}
    for a in traffic.accepted:
        by_domain.setdefault(a.domain, []).append(a)
    for d, path in enumerate(paths):
        conn = _connect(path)
        stored = {r["id"]: r for r in conn.execute(
            "SELECT id, analyst, idempotency_key, status, result_json FROM requests")}
        marks = ", ".join("?" * len(TERMINAL_ACTIONS))
        terminal = Counter(r[0] for r in conn.execute(
            f"SELECT object_id FROM audit WHERE action IN ({marks})", TERMINAL_ACTIONS))
        released = {}
        for r in conn.execute("SELECT object_id, payload_json FROM audit WHERE action = 'release'"):
            released.setdefault(r[0], []).append(json.loads(r[1]).get("result_sha256"))
        keys = Counter((r["analyst"], r["idempotency_key"]) for r in stored.values() if r["idempotency_key"])
        counts["duplicate_submissions"] += sum(n - 1 for n in keys.values() if n > 1)
        mine = by_domain.get(d, [])
        ids_by_key: dict[tuple, set] = {}
        for a in mine:
            ids_by_key.setdefault((a.analyst, a.key), set()).add(a.id)
        counts["duplicate_submissions"] += sum(len(v) - 1 for v in ids_by_key.values())
        for a in mine:
            row = stored.get(a.id)
            if row is None:
                counts["lost"] += 1
                continue
            status = row["status"]
            final_states[status] += 1
            ends = terminal.get(a.id, 0)
            if status in FINAL_STATUSES:
                counts["final_without_one_audit_end"] += ends != 1
            elif status == "pending":
                counts["pending_with_an_audit_end"] += ends != 0
            else:
                counts["stuck_approved_or_running"] += 1
            if status == "done":
                expected = hashlib.sha256((row["result_json"] or "").encode()).hexdigest()
                counts["released_not_audited"] += released.get(a.id) != [expected]
        counts["store_requests_nobody_saw_accepted"] += len(set(stored) - {a.id for a in mine})
        counts["audited_release_not_done"] += sum(1 for rid in released
                                                  if rid not in stored or stored[rid]["status"] != "done")
        counts.update(_budget_counts(conn, path))
        counts["job_run_twice"] += _runs_beyond_requeues(conn)
        conn.close()
        verify = subprocess.run([sys.executable, "-m", "fednb", "domain", "audit", str(path), "--verify"],
                                capture_output=True, text=True, timeout=120)
        counts["audit_verify_failed"] += verify.returncode != 0
    return {"final_states": dict(sorted(final_states.items())), "refused_by_budget": counts.get("refused_by_budget", 0),
            **{name: counts.get(name, 0) for name in INVARIANTS}}


def _is_zygote(pid: int) -> bool:
    cmd = command_line(pid)
    return len(cmd) > 3 and cmd[1] == "-I" and cmd[2] == "-c" and "fednb.domain.run.sandbox" in cmd[3]


def sandbox_processes(pid: int | None) -> set[int]:
    """The sandbox fork servers a domain server runs (its zygote and the zygote's namespace init),
    found through the worker processes of --workers N too."""
    if pid is None:
        return set()
    return {p for p in descendants(pid) if _is_zygote(p)}


def left_behind(pids: set[int], grace_s: float = 10.0) -> int:
    """How many of these sandbox processes are still alive after ``grace_s``."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = {p for p in pids if _is_zygote(p)}
        if not alive or time.monotonic() > deadline:
            return len(alive)
        time.sleep(0.2)


def run_soak(root: Path, cfg: SoakConfig) -> list[dict]:
    """Run one soak in ``root``; returns the JSON records it would print."""
    t0 = time.monotonic()
    paths, tokens, owners = make_domains(root, cfg)
    servers = start_all(paths, cfg.workers)
    t_setup = time.monotonic() - t0
    seen: set[int] = set()
    try:
        t1 = time.monotonic()
        traffic = asyncio.run(storm(cfg, servers, tokens, owners))
        t_storm = time.monotonic() - t1
        t2 = time.monotonic()
        still_busy = settle(paths, cfg.settle_s)
        t_settle = time.monotonic() - t2
    finally:
        for s in servers:
            seen |= sandbox_processes(s.pid) if s.alive() else set()
            s.stop()
    traffic.sandboxes |= seen
    t3 = time.monotonic()
    checks = check(paths, traffic)
    checks["still_busy_after_settle"] = still_busy
    checks["sandboxes_seen"] = len(traffic.sandboxes)
    checks["sandboxes_left_behind"] = left_behind(traffic.sandboxes)
    t_check = time.monotonic() - t3
    lat = sorted(traffic.submit_latency_s) or [0.0]
    during = sum(1 for t, _ in traffic.kills if t <= traffic.traffic_end)
    return [
        {"soak": "config", **asdict(cfg)},
        {"soak": "traffic", "submissions": cfg.analysts * cfg.requests_per_analyst,
         "accepted": len(traffic.accepted), "refused": dict(traffic.refused), "gave_up": traffic.gave_up,
         "server_errors": traffic.server_errors, "transport_errors": traffic.transport_errors,
         "transport_errors_by_kind": dict(traffic.transport_kinds),
         "retried_submissions": traffic.retried_submissions, "polls": traffic.polls,
         "owner_decisions": dict(traffic.decisions), "kills": len(traffic.kills), "kills_during_traffic": during,
         "functions": sum(a.kind == "function" for a in traffic.accepted)},
        {"soak": "checks", **checks},
        {"soak": "timings", "setup_s": round(t_setup, 2), "storm_s": round(t_storm, 2),
         "traffic_s": round(traffic.traffic_end, 2), "settle_s": round(t_settle, 2), "check_s": round(t_check, 2),
         "total_s": round(time.monotonic() - t0, 2),
         "restart_median_s": round(statistics.median(traffic.restart_s), 2) if traffic.restart_s else None,
         "restart_max_s": round(max(traffic.restart_s), 2) if traffic.restart_s else None,
         "submit_median_s": round(statistics.median(lat), 4), "submit_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 4),
         "submit_max_s": round(lat[-1], 3), **_spread("answer", traffic.answer_latency_s)},
    ]


def _spread(name: str, values: list[float]) -> dict:
    ordered = sorted(values) or [0.0]
    return {f"{name}_median_s": round(statistics.median(ordered), 4),
            f"{name}_p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 4), f"{name}_max_s": round(ordered[-1], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--domains", type=int, default=defaults.domains)
    parser.add_argument("--analysts", type=int, default=defaults.analysts)
    parser.add_argument("--requests", type=int, default=defaults.requests_per_analyst)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--postgres", action="store_true", help="stores on a throwaway PostgreSQL server")
    parser.add_argument("--workers", type=int, default=1, help="server processes per domain (needs --postgres)")
    args = parser.parse_args()
    cfg = SoakConfig(domains=args.domains, analysts=args.analysts, requests_per_analyst=args.requests,
                     kills=args.kills, seed=args.seed, workers=args.workers)
    with tempfile.TemporaryDirectory(prefix="fednb-soak-") as tmp:
        if args.postgres:
            from tests.postgres_server import running_postgres

            with running_postgres(Path(tmp) / "postgres") as admin:
                records = run_soak(Path(tmp), dataclasses.replace(cfg, postgres=admin))
        else:
            records = run_soak(Path(tmp), cfg)
    for record in records:
        print(json.dumps(record), flush=True)
    checks = records[2]
    bad = {k: checks[k] for k in (*INVARIANTS, "still_busy_after_settle", "sandboxes_left_behind") if checks[k]}
    if bad:
        print(json.dumps({"soak": "FAILED", **bad}), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
