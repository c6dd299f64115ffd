"""Files: nothing outside the job's own dataset and temp dir can be read, nothing shared written."""

from __future__ import annotations

import hashlib
import os

import pytest

from .support import DB_SECRET, TOKEN_SECRET

pytestmark = pytest.mark.usefixtures("unharmed")
DENIED = ("PermissionError", "FileNotFoundError", "OperationalError")


def read_job(path: str) -> str:
    return f"def f(df):\n    with open({path!r}, 'rb') as fh:\n        return fh.read().decode(errors='replace')\n"


def assert_denied(out, *secrets: str) -> None:
    assert out.status == "error", (out.status, out.value)
    assert out.message.startswith(DENIED), out.message
    assert out.value is None
    for s in secrets:
        assert s not in out.message


def test_the_domain_can_read_what_jobs_cannot(domain):
    # Guard: every denial below is about the sandbox, not about missing files.
    assert DB_SECRET.encode() in domain.db.read_bytes()
    assert TOKEN_SECRET in domain.tokens.read_text()


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/shadow", "/proc/self/environ", "/proc/1/environ",
                                  "/proc/self/maps", "/root/.bash_history", "/work/main/pyproject.toml"])
def test_system_files(run, path):
    assert_denied(run(read_job(path)))


def test_store_and_tokens_by_absolute_path(run, domain):
    assert_denied(run(read_job(str(domain.db))), DB_SECRET)
    assert_denied(run(read_job(str(domain.tokens))), TOKEN_SECRET)


def test_store_via_dotdot_from_the_dataset(run, domain):
    code = ("import os\ndef f(df, data):\n    p = os.path.join(os.path.dirname(data), '..', 'tokens')\n"
            "    return open(p).read()\n")
    assert_denied(run(code, args={"data": str(domain.csv)}), TOKEN_SECRET)


def test_store_via_symlink_and_hardlink_in_the_temp_dir(run, domain):
    code = ("import os\ndef f(df, target):\n    os.symlink(target, 'link')\n    return open('link').read()\n")
    assert_denied(run(code, args={"target": str(domain.tokens)}), TOKEN_SECRET)
    code = ("import os\ndef f(df, target):\n    os.link(target, 'hard')\n    return open('hard').read()\n")
    out = run(code, args={"target": str(domain.db)})
    assert out.status == "error" and out.value is None
    assert out.message.startswith(DENIED + ("OSError",)), out.message


def test_listing_the_domain_folder_shows_no_store(run, domain):
    out = run(f"import os\ndef f(df):\n    return sorted(os.listdir({str(domain.root)!r}))\n")
    if out.status == "ok":  # the mount namespace shows an empty stand-in with the datasets only
        assert "domain.db" not in out.value and "tokens" not in out.value
    else:
        assert_denied(out)


def test_other_datasets_and_own_dataset_by_path(run, domain):
    # The job gets its data as `df`; it has no file access to any dataset, other ones included.
    assert_denied(run(read_job(str(domain.other))))
    assert_denied(run(read_job(str(domain.csv))))


def test_store_through_fednb_internals_and_sqlite(run, domain):
    code = ("import fednb, fednb.codec, fednb.errors, sqlite3\n"
            "def f(df, db):\n    con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)\n"
            "    return con.execute('select v from secrets').fetchall()\n")
    assert_denied(run(code, args={"db": str(domain.db)}), DB_SECRET)


def test_writing_the_dataset_fails_and_leaves_it_unchanged(run, domain):
    before = hashlib.sha256(domain.csv.read_bytes()).hexdigest()
    code = f"def f(df):\n    with open({str(domain.csv)!r}, 'a') as fh:\n        fh.write('evil,1,2,3\\n')\n"
    out = run(code)
    assert out.status == "error" and out.message.startswith(("PermissionError", "OSError")), out.message
    code = f"import os\ndef f(df):\n    os.unlink({str(domain.csv)!r})\n"
    assert run(code).status == "error"
    assert hashlib.sha256(domain.csv.read_bytes()).hexdigest() == before


def test_writing_outside_the_temp_dir(run, domain):
    name = "fednb-planted-" + os.urandom(4).hex()
    targets = [f"/tmp/{name}", str(domain.root / name), str(domain.datasets / name), f"/dev/shm/{name}",
               f"/var/tmp/{name}"]
    for path in targets:
        out = run(f"def f(df):\n    open({path!r}, 'w').write('x')\n")
        assert out.status == "error", path
    assert not [p for p in targets if os.path.exists(p)]


def test_temp_dir_works_and_is_capped(run):
    out = run("import os\ndef f(df):\n    open('a.txt', 'w').write('hi')\n    return [open('a.txt').read(), os.getcwd() == os.environ['HOME']]\n")
    assert (out.status, out.value) == ("ok", ["hi", True])
    # One file: RLIMIT_FSIZE (EFBIG); many files: the job's own size-capped tmpfs (ENOSPC).
    out = run("def f(df):\n    open('big', 'wb').write(b'x' * (20 * 2**20))\n", max_file_mb=8)
    assert out.status == "error" and "File too large" in out.message
    out = run("def f(df):\n    for i in range(10):\n        open(f'f{i}', 'wb').write(b'x' * (8 * 2**20))\n",
              max_file_mb=16, tmp_mb=32)
    assert out.status == "error" and "No space left" in out.message


def test_parent_memory(run):
    code = '''
import ctypes, os
def f(df, domain_pid):
    found = {}
    for pid in (os.getppid(), 1, domain_pid):
        try:
            open(f"/proc/{pid}/mem", "rb").read(16)
            found[str(pid)] = "ALLOWED"
        except OSError as e:
            found[str(pid)] = type(e).__name__
    libc = ctypes.CDLL(None, use_errno=True)
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    buf = ctypes.create_string_buffer(64)
    local, remote = iovec(ctypes.cast(buf, ctypes.c_void_p), 64), iovec(0x400000, 64)
    found["vm_readv"] = libc.process_vm_readv(os.getppid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    found["ptrace"] = libc.ptrace(16, os.getppid(), 0, 0)  # PTRACE_ATTACH
    return found
'''
    out = run(code, args={"domain_pid": os.getpid()})
    assert out.status == "ok", out.message
    assert out.value["vm_readv"] == -1 and out.value["ptrace"] == -1
    assert "ALLOWED" not in out.value.values()
