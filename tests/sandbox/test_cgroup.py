"""One cgroup (v2) for all of a domain's jobs: placed, capped together, and honest about where it is not.

This suite's host decides what can be shown: where the memory and cpu controllers are on cgroup v2
and writable, the shared cap is applied and a job past it is stopped; elsewhere (cgroup v1, a hybrid
host, no delegation) the report says why it is not in force and jobs still run. Placement alone
(jobs inside the group, the zygote outside) is shown wherever any v2 hierarchy is writable.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

import pytest

from fednb.domain.review.policy import load_policy, render_template
from fednb.domain.run.sandbox import Sandbox, cgroup
from fednb.errors import PolicyError

from .support import Runner, descendants

SLEEP = "import time\ndef f(df):\n    time.sleep(1.5)\n    return len(df)\n"


def writable_v2() -> str | None:
    base = cgroup.locate()
    return base if base and os.access(base, os.W_OK) and os.path.exists(os.path.join(base, "cgroup.procs")) else None


def job_cgroups_while(sandbox: Sandbox, runner: Runner, code: str) -> tuple[dict[int, str], object]:
    """The cgroup of each of the zygote's descendants (host pids) while one job runs ``code``, and
    the job's outcome."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("out", runner(code)))
    thread.start()
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
        for pid in descendants(sandbox.zygote_pid):
            try:
                seen[pid] = Path(f"/proc/{pid}/cgroup").read_text()  # the last look wins: after the join
            except OSError:
                pass
    thread.join()
    return seen, result["out"]


def test_the_report_says_whether_the_shared_cap_is_in_force(domain):
    made = cgroup.create(1024, 1.0)
    with Sandbox(domain.datasets, cgroup=made) as sb:
        iso = sb.isolation
        assert iso["level"] == "strong", iso["details"]  # never a reason to refuse jobs or fail to start
        assert iso["cgroup"] is made.limits
        if made.limits:
            assert "all jobs together at most 1024 MiB and 1 CPUs" in iso["cgroup_details"]
        else:
            assert iso["cgroup_details"].startswith("shared job cgroup not in force") and ":" in iso["cgroup_details"]
        assert iso["cgroup_details"] in iso["details"]
        out = Runner(sb, domain)("def f(df):\n    return len(df)\n")
        assert (out.status, out.value) == ("ok", len(domain.frame))
    assert made.path is None or not os.path.exists(made.path)  # removed on close


def test_jobs_run_inside_the_group_and_the_zygote_outside(domain):
    base = writable_v2()
    if base is None:
        pytest.skip(f"no writable cgroup v2 hierarchy on this host ({cgroup.locate()})")
    path = os.path.join(base, f"fednb-test-{secrets.token_hex(4)}")
    os.mkdir(path)
    group = cgroup.JobsCgroup(path, False, "placement only: no limits written")
    rel = "/" + os.path.relpath(path, cgroup.locate())
    with Sandbox(domain.datasets, cgroup=group) as sb:
        assert group.cpu_used_us() > 0  # the self-test job was charged here
        seen, out = job_cgroups_while(sb, Runner(sb, domain), SLEEP)
        assert (out.status, out.value) == ("ok", len(domain.frame)), out.message
        assert seen, "no job process seen"
        for text in seen.values():
            assert f"0::{rel}\n" in text
        assert f"0::{rel}\n" not in Path(f"/proc/{sb.zygote_pid}/cgroup").read_text()
        assert sb.isolation["cgroup"] is False  # placed, but no limits: not reported as a cap
    assert not os.path.exists(path)


@pytest.fixture
def capped(domain):
    made = cgroup.create(400, 1.0)
    if not made.limits:
        pytest.skip(made.note)
    sb = Sandbox(domain.datasets, cgroup=made)
    sb.start()
    yield sb, made
    sb.close()


def test_the_limits_are_applied(capped, domain):
    sb, made = capped
    assert Path(made.path, "memory.max").read_text().strip() == str(400 * 2**20)
    assert Path(made.path, "cpu.max").read_text().split() == ["100000", "100000"]
    seen, out = job_cgroups_while(sb, Runner(sb, domain), SLEEP)
    rel = "/" + os.path.relpath(made.path, cgroup.locate())
    assert out.status == "ok" and seen and all(f"0::{rel}\n" in text for text in seen.values())


def test_jobs_past_the_shared_memory_cap_are_stopped_with_a_reason(capped, domain):
    # Each job stays well inside its own budget (1 GiB); three together pass the shared 400 MiB.
    sb, made = capped
    hog = ("import time\ndef f(df):\n    b = bytearray(250 * 2**20)\n    for i in range(0, len(b), 4096):\n"
           "        b[i] = 1\n    time.sleep(2)\n    return len(b)\n")
    run = Runner(sb, domain)
    outs = []
    threads = [threading.Thread(target=lambda: outs.append(run(hog, memory_mb=1024))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stopped = [o for o in outs if o.status != "ok"]
    assert stopped, [o.status for o in outs]
    for o in stopped:
        assert o.status == "memory" and "shared memory cap of 400 MiB" in o.message, (o.status, o.message)
    assert made.oom_kills() >= len(stopped)


def test_create_on_a_v2_tree_writes_the_limits(tmp_path):
    # The files a cgroup v2 directory holds, as plain files: what create() writes, and where.
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("\n")
    made = cgroup.create(3072, 1.5, base=str(tmp_path))
    assert made.limits and made.memory_mb == 3072 and made.cpus == 1.5, made.note
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu"
    group = Path(made.path)
    assert group.parent == tmp_path and group.name.startswith("fednb-jobs-")
    assert (group / "memory.max").read_text() == str(3072 * 2**20)
    assert (group / "cpu.max").read_text() == "150000 100000"


def test_create_degrades_with_a_reason(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")  # a hybrid host: memory and cpu on v1
    made = cgroup.create(1024, 1, base=str(tmp_path))
    assert made.path is None and not made.limits
    assert "offers no memory or cpu controller" in made.note and "not in force" in made.note
    assert list(tmp_path.iterdir()) == [tmp_path / "cgroup.controllers"]  # nothing made
    missing = cgroup.create(1024, 1, base=str(tmp_path / "absent"))
    assert missing.path is None and "cannot read" in missing.note
    v1 = tmp_path / "mountinfo"
    v1.write_text("30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n")
    (tmp_path / "self_cgroup").write_text("4:memory:/\n")
    assert cgroup.locate(str(v1), str(tmp_path / "self_cgroup")) is None


def test_locate_follows_the_v2_mount_and_own_path(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
                    "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n")
    own = tmp_path / "cgroup"
    own.write_text("4:memory:/x\n0::/system.slice/fednb.service\n")
    assert cgroup.locate(str(info), str(own)) == "/sys/fs/cgroup/unified/system.slice/fednb.service"


def test_policy_settings(tmp_path):
    path = tmp_path / "policy.toml"
    text = render_template("d")
    path.write_text(text)
    section = load_policy(path).sandbox
    assert (section.namespaces, section.jobs_memory_mb, section.jobs_cpus) == (True, 0, 0)
    assert section.shared_cap() == (2 * 2048, 2.0)  # workers x memory_mb, one core per worker
    path.write_text(text.replace("jobs_memory_mb = 0", "jobs_memory_mb = 8192").replace("jobs_cpus = 0", "jobs_cpus = 1.5"))
    assert load_policy(path).sandbox.shared_cap() == (8192, 1.5)
    for bad, words in (("jobs_memory_mb = 100", "below memory_mb"), ("jobs_memory_mb = -1", "jobs_memory_mb"),
                       ("jobs_cpus = -2", "jobs_cpus"), ("namespaces = 3", "namespaces")):
        key = bad.split(" = ")[0]
        default = {"jobs_memory_mb": "jobs_memory_mb = 0", "jobs_cpus": "jobs_cpus = 0",
                   "namespaces": "namespaces = true"}[key]
        path.write_text(text.replace(default, bad))
        with pytest.raises(PolicyError, match=words):
            load_policy(path)


def test_a_kill_is_blamed_on_the_shared_cap_only_when_the_kernel_counted_one(tmp_path):
    # memory.events as the kernel writes it; the link is what jobs.run and Session consult.
    from types import SimpleNamespace

    from fednb.domain.run.sandbox import jobs
    from fednb.domain.run.sandbox.spec import JobOutcome

    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n")
    link = SimpleNamespace(cgroup=cgroup.JobsCgroup(str(tmp_path), True, "", memory_mb=400, cpus=1))
    assert jobs.oom_kills(link) == 2 and jobs.oom_kills(SimpleNamespace()) == 0
    blamed = jobs.shared_cap(JobOutcome("killed", message="the job was killed by SIGKILL"), {"signal": 9}, link, 1)
    assert blamed.status == "memory" and "shared memory cap of 400 MiB" in blamed.message
    for event, before in (({"signal": 9}, 2), ({"signal": 9, "timed_out": True}, 1), ({"signal": 15}, 1)):
        out = jobs.shared_cap(JobOutcome("killed", message="m"), event, link, before)
        assert (out.status, out.message) == ("killed", "m"), event
    assert jobs.shared_cap(JobOutcome("killed", message="m"), {"signal": 9}, SimpleNamespace(), 0).status == "killed"
