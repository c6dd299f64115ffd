"""Crash and load soak at CI size: 50 analysts x 20 requests against 3 domains while the domains are
killed with kill -9 and restarted 20 times. Nothing accepted is lost, nothing is left half done, every
release is audited, every audit log verifies. The harness is benchmarks/soak.py (bigger runs there)."""

from __future__ import annotations

import json

import pytest

from benchmarks.soak import INVARIANTS, SoakConfig, run_soak


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing(tmp_path, capsys):
    cfg = SoakConfig()
    config, traffic, checks, timings = run_soak(tmp_path, cfg)
    with capsys.disabled():
        print(f"\nsoak: {json.dumps(traffic)}\nsoak: {json.dumps(checks)}\nsoak: {json.dumps(timings)}")
    assert traffic["kills"] == cfg.kills and traffic["kills_during_traffic"] >= cfg.kills // 2
    assert traffic["server_errors"] == 0 and traffic["gave_up"] == 0
    # every submission got an answer: accepted, or refused with a 4xx that says why
    assert traffic["accepted"] + sum(traffic["refused"].values()) == cfg.analysts * cfg.requests_per_analyst
    assert traffic["accepted"] >= 0.95 * cfg.analysts * cfg.requests_per_analyst
    assert traffic["transport_errors"] > 0, "no submission ever met a dead domain: the kills missed the traffic"
    # one final state each (or still pending review), nothing lost, duplicated, stuck or unaudited
    assert sum(checks["final_states"].values()) == traffic["accepted"]
    assert set(checks["final_states"]) <= {"pending", "done", "denied", "blocked", "failed"}
    assert {name: checks[name] for name in INVARIANTS} == dict.fromkeys(INVARIANTS, 0)
    assert checks["still_busy_after_settle"] == 0
    assert checks["sandboxes_seen"] >= cfg.kills and checks["sandboxes_left_behind"] == 0
    assert checks["final_states"].get("done", 0) > 0.5 * traffic["accepted"]
