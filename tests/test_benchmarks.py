"""Every benchmark runs, at a small size, and prints only JSON lines: a benchmark that no longer
runs is caught here, not on the day its numbers are needed. (The numbers themselves are measured by
running the scripts at full size; nothing here times anything.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMALL = {  # script -> (arguments, a key that each run's output must contain)
    "request_latency": (["--runs", "3"], "median_s"),
    "latency_under_attack": (["--runs", "3", "--rows", "20000"], "median_s"),
    "glm_parity": (["--runs", "1"], "max_rel_diff_coef"),
    "survival_parity": (["--runs", "1", "--points", "13"], "max_rel_diff_se"),
    "sandbox_start": (["--jobs", "3", "--cold", "1"], "median"),
    "custom_columns": (["--rows", "20000", "--runs", "1"], "job_1_of_10_vs_10_of_10"),
    "secagg_overhead": (["--rounds", "3", "--domains", "3", "--workloads", "E1_B32"], "overhead_median"),
    "dp_digits": (["--rounds", "2", "--epsilons", "8", "--seeds", "0"], "epsilon_debited_per_domain"),
    "fl_vs_flower": (["--skip-flower", "--rounds", "2", "--best-seeds"], "median_overhead_ms"),
    "workshop_load": (["--students", "3", "--mode", "threads"], "all_answered"),
    "workshop_memory": (["--skip-training"], "session_peak_pss_mb"),
    "differencing": (["--rows", "100000", "--releases", "200", "--checks", "5"], "check_ms_median"),
    "transparency_log": (["--entries", "500", "--runs", "5"], "consistency_proof_us"),
    "mock_quality": (["--skip-big", "--only", "demo_hospital_a"], "pmse_ratio"),
    "many_domains": (["--domains", "2", "--idle-seconds", "1", "--settle-seconds", "1"], "pss_mb_per_domain"),
    "cli_startup": (["--runs", "1"], "median_s"),
    "rows_scaling": (["--rows", "20000", "--runs", "1"], "vs_plain_duckdb"),
    "custom_code_postgres": (["--rows", "20000"], "bounded_count_to"),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", list(SMALL))
def test_the_benchmark_runs_and_prints_json_lines(script, tmp_path):
    pytest.importorskip("torch")
    args, key = SMALL[script]
    env = {**os.environ, "FEDNB_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args], capture_output=True,
                         text=True, timeout=240, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert lines and any(key in line for line in lines), run.stdout[-2000:]
