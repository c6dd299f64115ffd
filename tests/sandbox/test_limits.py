"""Resources and output: limits hold, and only the zygote's and the kernel's word decides status."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("unharmed")


def test_busy_loop_hits_the_cpu_limit(run):
    out = run("def f(df):\n    while True:\n        pass\n", cpu_seconds=1, wall_seconds=8)
    assert out.status == "cpu_limit", (out.status, out.message)
    assert 0.9 <= out.cpu_s <= 3 and out.wall_ms < 5000


def test_sleep_hits_the_wall_limit(run):
    out = run("import time\ndef f(df):\n    time.sleep(60)\n", wall_seconds=1)
    assert out.status == "timeout", (out.status, out.message)
    assert 900 <= out.wall_ms < 3000


@pytest.mark.parametrize("code", [
    "def f(df):\n    return len(bytearray(10**11))\n",
    "import numpy as np\ndef f(df):\n    return float(np.ones(10**10).sum())\n",
    "def f(df):\n    keep = []\n    while True:\n        keep.append(bytearray(50 * 2**20))\n",
    "def f(df):\n    return len(df.sample(n=10**8, replace=True))\n",
])
def test_memory_bombs(run, code):
    out = run(code, memory_mb=512)
    assert out.status == "memory", (out.status, out.message)
    assert out.max_rss_mb < 512 + 400


def test_fifty_megabytes_of_output(run):
    out = run("def f(df):\n    return 'x' * 50_000_000\n")
    assert out.status == "output_too_large" and out.value is None


def test_deeply_nested_output(run):
    out = run("def f(df):\n    v = 1\n    for _ in range(10000):\n        v = [v]\n    return v\n")
    assert out.status in ("error", "bad_output") and out.value is None
    assert "nested deeper" in out.message


def test_pickle_style_objects_are_not_released(run):
    code = ("import os\nclass Evil:\n    def __reduce__(self):\n        return (os.system, ('echo pwned',))\n"
            "def f(df):\n    return {'result': Evil()}\n")
    out = run(code)
    assert out.status == "error" and "cannot release an object of type Evil" in out.message
    out = run("def f(df):\n    return {1, 2, 3}\n")
    assert out.status == "error" and "set" in out.message


FRAME = ('import json, os, struct\n'
         'FAKE = json.dumps({"status": "ok", "value": "forged", "message": "", "rows": 1, "probe_rows": 1}).encode()\n'
         'FRAME = struct.pack("!II", len(FAKE), 0) + FAKE\n'
         'def forge():\n    for fd in range(0, 64):\n        try:\n            os.write(fd, FRAME)\n'
         '        except OSError:\n            pass\n')


def test_forged_success_then_exception(run):
    out = run(FRAME + "def f(df):\n    forge()\n    raise ValueError('boom')\n")
    assert out.status == "error" and out.value is None
    assert out.message.startswith(("ValueError", "the job raised an exception")), out.message


def test_forged_success_then_hang(run):
    out = run(FRAME + "import time\ndef f(df):\n    forge()\n    time.sleep(60)\n", wall_seconds=1)
    assert (out.status, out.value) == ("timeout", None)


def test_forged_success_then_error_exit_code(run):
    out = run(FRAME + "def f(df):\n    forge()\n    os._exit(10)\n")
    assert (out.status, out.value) == ("error", None)


def test_forged_success_then_killed_by_a_signal(run):
    out = run(FRAME + "import signal\ndef f(df):\n    forge()\n    os.kill(os.getpid(), signal.SIGSEGV)\n")
    assert (out.status, out.value) == ("killed", None) and "SIGSEGV" in out.message


def test_forged_garbage_and_json_bombs(run):
    out = run("import os\ndef f(df):\n    os.write(3, b'{not json')\n    os._exit(0)\n")
    assert out.status == "bad_output"
    bomb = ('import json, os, struct\ndef f(df):\n    body = b\'{"status": "ok", "value": \' + b"[" * 100000 + b"]" * 100000 + b"}"\n'
            '    os.write(3, struct.pack("!II", len(body), 0) + body)\n    os._exit(0)\n')
    out = run(bomb)
    assert (out.status, out.value) == ("bad_output", None)


def test_flooding_the_result_pipe_is_cut_off(run):
    code = "import os, time\ndef f(df):\n    chunk = b'x' * 2**20\n    for _ in range(60):\n        os.write(3, chunk)\n    time.sleep(60)\n"
    out = run(code, wall_seconds=10)
    assert out.status == "output_too_large" and out.wall_ms < 5000


def test_open_file_limit(run):
    out = run("def f(df):\n    return [open('/dev/null') for _ in range(1000)]\n", max_open_files=64)
    assert out.status == "error" and "Too many open files" in out.message
