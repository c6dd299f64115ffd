"""The zygote: a warm fork server, exec'd by the domain with a clean environment.

Runs in its own interpreter (``python -I -c BOOT root fd``), never forked from the domain: a
forked job inherits every byte of its parent, so the parent must hold nothing secret. It enters
its namespaces once, imports and warms numpy/pandas on made-up data, then forks one child per
job and watches each child's pidfd and deadline. It never reads a job's spec (that travels in a
memfd straight to the child) and reports exits as the kernel gives them.

Control protocol (SOCK_SEQPACKET, one JSON object per message):
  domain → zygote: {"op": "config", ...} once; {"op": "job", "id", "limits", "deadline_s",
      "session"} + fds [spec memfd, result pipe write end, (session) input pipe read end];
      {"op": "kill", "id"}. Closing the socket stops the zygote and all its jobs.
  zygote → domain: {"event": "ready", ...}; {"event": "exit", "id", "exitcode", "signal",
      "timed_out", "cpu_s", "rss_mb"}; {"event": "rejected", "id", "message"}.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time

from fednb.domain.run.sandbox import child, harness, landlock, lockdown, namespaces, seccomp
from fednb.domain.run.sandbox.spec import EXIT_SETUP

UID_BASE, UID_SLOTS = 1_900_000_000, 4096  # per-job uids: no files, no other processes
NPROC = 64  # threads + processes per job uid (processes are denied by seccomp anyway)
SYSTEM_READ_ONLY = ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/zoneinfo",
                    "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom", "/sys/devices/system/cpu"]


def main(fd: int) -> None:
    ctl = socket.socket(fileno=fd)
    config = json.loads(ctl.recv(1 << 16))
    ns = namespaces.enter() if config["namespaces"] else {
        "netns": False, "mountns": False, "pidns": False, "userns": False, "error": "disabled by the domain"}
    if ns["pidns"]:
        # The new pid namespace applies to children: the server is our child, pid 1 inside.
        host_pid_reader, host_pid_writer = os.pipe()
        pid = os.fork()
        if pid:
            ctl.close()
            os.close(host_pid_reader)
            os.write(host_pid_writer, str(pid).encode())
            os.close(host_pid_writer)
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        os.close(host_pid_writer)
        lockdown.prctl(lockdown.PR_SET_PDEATHSIG, signal.SIGKILL)
        host_pid = int(os.read(host_pid_reader, 32) or 0)
        os.close(host_pid_reader)
        if host_pid == 0:  # our parent died before we armed PDEATHSIG
            os._exit(1)
    else:
        host_pid = os.getpid()
    Zygote(ctl, config, ns, host_pid).serve()


class Job:
    def __init__(self, jid: int, pid: int, deadline: float | None, tmp: str, slot: int | None):
        self.id, self.pid, self.deadline, self.tmp, self.slot = jid, pid, deadline, tmp, slot
        self.pidfd = os.pidfd_open(pid)
        self.timed_out = False


class Zygote:
    def __init__(self, ctl: socket.socket, config: dict, ns: dict, host_pid: int):
        self.ctl, self.config, self.ns, self.host_pid = ctl, config, ns, host_pid
        self.jobs: dict[int, Job] = {}
        self.by_pidfd: dict[int, Job] = {}
        self.free_slots = list(range(UID_SLOTS - 1, -1, -1))
        notes = []
        self._warm(config["warm"])  # first: the jobs' root then holds every folder the warm-up imported from
        keep = self._python_paths()
        if ns["mountns"]:
            notes += namespaces.setup_filesystem(config["domain_dir"], config["datasets_dir"], keep,
                                                 ns.get("sockets") or [], SYSTEM_READ_ONLY)
            self.jobs_root = namespaces.JOBS_ROOT
        else:
            self.jobs_root = tempfile.mkdtemp(prefix="fednb-jobs-")
            os.chmod(self.jobs_root, 0o711)
        unreadable = [p for p in keep if os.path.exists(p) and not namespaces.world_readable(p)]
        self.uid_drop = os.geteuid() == 0 and not ns["userns"] and not unreadable
        if os.geteuid() == 0 and unreadable:
            notes.append(f"no per-job uid: {', '.join(unreadable)} not readable by other users "
                         "(jobs keep uid 0 without capabilities; landlock + seccomp carry the file wall)")
        self.read_only = sorted(set(keep) | set(SYSTEM_READ_ONLY))
        self.landlock_abi = landlock.abi_version()
        self.seccomp = seccomp.supported()
        if self.seccomp:
            seccomp.build(1)  # assemble the filter once, before any fork
        lockdown.prctl(lockdown.PR_SET_CHILD_SUBREAPER, 1)  # orphans come back to us to be reaped
        threads = lockdown.thread_count()
        if threads != 1:
            raise RuntimeError(f"the zygote runs {threads} threads after warm-up; fork would lose them")
        self._send({"event": "ready", "host_pid": host_pid, "netns": ns["netns"], "mountns": ns["mountns"],
                    "pidns": ns["pidns"], "userns": ns["userns"], "ns_error": ns["error"],
                    "landlock_abi": self.landlock_abi, "seccomp": self.seccomp, "uid_drop": self.uid_drop,
                    "tmpfs": ns["mountns"], "notes": notes, "vm_size_mb": lockdown.vm_size_bytes() / 2**20})

    @staticmethod
    def _python_paths() -> list[str]:
        """What jobs need to import lazily: the interpreter's prefixes (stdlib, site-packages) and,
        from any other sys.path entry (a source checkout, an editable install), only the packages
        already imported from it: never the whole checkout (.git, configs, a domain folder)."""
        prefixes = {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
        paths = set(prefixes)
        inside = (lambda p: any(p == q or p.startswith(q + "/") for q in prefixes))
        for entry in sys.path:
            entry = os.path.abspath(entry) if entry else ""
            if entry and inside(entry):
                paths.add(entry)
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None)
            if "." in name or not origin:
                continue
            origin = os.path.abspath(origin)
            if not inside(origin):
                is_pkg = hasattr(module, "__path__")
                paths.add(os.path.dirname(origin) if is_pkg else origin)
        return sorted(p for p in paths if os.path.exists(p))

    @staticmethod
    def _warm(modules: list[str]) -> None:
        """Import and exercise on made-up data (never real data: every job inherits this memory)."""
        for name in modules:
            importlib.import_module(name)
        harness.load_all()
        if "pandas" in modules:
            import io

            import pandas as pd

            df = pd.read_csv(io.StringIO("g,x,s\na,1,u\nb,2.5,v\na,3,w\n"))
            df.groupby("g")["x"].agg(["mean", "count", "std"])
            df.describe(include="all")
            df.sample(frac=0.5, random_state=0)
            import pyarrow.parquet  # noqa: F401  (import only: a parquet read starts threads)
        if "torch" in modules:
            import torch
            from safetensors.torch import load, save

            torch.set_num_threads(1)
            # a training step on made-up data: the first optimizer alone costs ~2 s of lazy imports
            model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
            x, y = torch.randn(8, 4), torch.tensor([0, 1] * 4)
            for opt in (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), torch.optim.Adam(model.parameters())):
                opt.zero_grad()
                (torch.nn.functional.cross_entropy(model(x), y)
                 + torch.nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y.float())).backward()
                opt.step()
            load(save(model.state_dict()))

    def _send(self, msg: dict) -> None:
        try:
            self.ctl.send(json.dumps(msg).encode())
        except OSError:
            pass  # the domain is gone; the loop notices EOF

    # -- the loop ---------------------------------------------------------------------------
    def serve(self) -> None:
        poller = select.poll()
        poller.register(self.ctl.fileno(), select.POLLIN)
        while True:
            deadlines = [j.deadline for j in self.jobs.values() if j.deadline and not j.timed_out]
            timeout = None if not deadlines else max(0.0, min(deadlines) - time.monotonic()) * 1000
            for fd, _ in poller.poll(timeout):
                if fd == self.ctl.fileno():
                    if not self._on_message(poller):
                        self._shutdown()
                        return
                elif fd in self.by_pidfd:
                    job = self.by_pidfd.pop(fd)
                    poller.unregister(fd)
                    self._reap(job)
            now = time.monotonic()
            for job in list(self.jobs.values()):
                if job.deadline and not job.timed_out and now >= job.deadline:
                    job.timed_out = True
                    self._kill(job)

    def _on_message(self, poller: select.poll) -> bool:
        try:
            data, fds, _, _ = socket.recv_fds(self.ctl, 1 << 16, 4)
        except OSError:
            return False
        if not data:
            return False
        msg = json.loads(data)
        if msg.get("op") == "job":
            try:
                job = self._fork(msg, fds)
            except Exception as e:
                self._send({"event": "rejected", "id": msg.get("id"), "message": f"{type(e).__name__}: {e}"})
            else:
                self.jobs[job.id] = job
                self.by_pidfd[job.pidfd] = job
                poller.register(job.pidfd, select.POLLIN)
            finally:
                for fd in fds:
                    os.close(fd)
        elif msg.get("op") == "kill" and msg.get("id") in self.jobs:
            self._kill(self.jobs[msg["id"]])
        return True

    def _fork(self, msg: dict, fds: list[int]) -> Job:
        session = bool(msg.get("session"))
        if len(fds) != (3 if session else 2):
            raise ValueError("wrong number of file descriptors")
        limits = msg["limits"]
        slot = self.free_slots.pop() if self.uid_drop else None
        uid = UID_BASE + slot if slot is not None else None
        tmp = os.path.join(self.jobs_root, f"job-{int(msg['id'])}")
        try:
            if self.ns["mountns"]:
                namespaces.mount_job_tmp(tmp, uid if uid is not None else 0, limits["tmp_mb"])
            else:
                os.mkdir(tmp, 0o700)
                if uid is not None:
                    os.chown(tmp, uid, uid)
            if lockdown.thread_count() != 1:
                raise RuntimeError("the zygote is not single-threaded")
            ctx = {"spec_fd": fds[0], "result_fd": fds[1], "input_fd": fds[2] if session else None,
                   "cgroup_fd": self.config.get("cgroup_fd"),
                   "session": session, "zygote_pid": os.getpid(), "tmp": tmp, "uid": uid, "nproc": NPROC,
                   "landlock_abi": self.landlock_abi, "seccomp": self.seccomp, "read_only": self.read_only}
            deadline = time.monotonic() + float(msg["deadline_s"]) if msg.get("deadline_s") else None
            pid = os.fork()
            if pid == 0:
                try:
                    child.main(ctx)
                finally:
                    os._exit(EXIT_SETUP)
        except BaseException:
            self._cleanup(tmp, slot)
            raise
        try:
            return Job(int(msg["id"]), pid, deadline, tmp, slot)
        except BaseException:  # no pidfd: the child must not run untracked
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self._cleanup(tmp, slot)
            raise

    @staticmethod
    def _kill(job: Job) -> None:
        for kill in (os.kill, os.killpg):  # the pid before the job's setsid, its group after
            try:
                kill(job.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _reap(self, job: Job) -> None:
        self._kill(job)  # whatever else is in its group, before the group id can be reused
        _, status, usage = os.wait4(job.pid, 0)
        os.close(job.pidfd)
        del self.jobs[job.id]
        self._cleanup(job.tmp, job.slot)
        self._send({"event": "exit", "id": job.id, "exitcode": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                    "timed_out": job.timed_out, "cpu_s": usage.ru_utime + usage.ru_stime,
                    "rss_mb": usage.ru_maxrss / 1024})
        self._reap_strays()

    def _reap_strays(self) -> None:
        known = {j.pid for j in self.jobs.values()}
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid in known:
                return
            os.waitpid(info.si_pid, 0)

    def _cleanup(self, tmp: str, slot: int | None) -> None:
        try:
            if self.ns["mountns"]:
                namespaces.unmount_job_tmp(tmp)
            else:
                shutil.rmtree(tmp)  # fd-based: does not follow the job's symlinks
        except FileNotFoundError:
            pass
        if slot is not None:
            self.free_slots.append(slot)

    def _shutdown(self) -> None:
        for job in list(self.jobs.values()):
            self._kill(job)
        for job in list(self.jobs.values()):
            self._reap(job)
        if not self.ns["mountns"]:
            shutil.rmtree(self.jobs_root, ignore_errors=True)
        os._exit(0)
