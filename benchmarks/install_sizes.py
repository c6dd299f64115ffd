"""Disk size of each way to install fednb, against a venv with pandas alone.

Builds the wheel of this checkout once (no build isolation: the hatch plugins come from the running
environment), then for each profile makes a fresh venv and pip-installs into it with the
repository's constraints.txt, as the README does (pip's cache and the configured indexes, no other
network), and prints one JSON line per profile: site-packages in MB
(``du -sm``), MB over the pandas-only venv, the number of distributions, the largest ones and the
install's wall time. Profiles: ``pandas`` (the reference), ``analyst`` (``pip install fednb``),
``domain`` (``fednb[domain]``), ``widgets`` (``fednb[widgets]``), ``all`` (``fednb[all]``).

    python benchmarks/install_sizes.py [--profiles pandas,analyst,domain,all] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = {"pandas": None, "analyst": "", "widgets": "[widgets]", "domain": "[domain]", "all": "[all]"}


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True)
    return next(out.glob("fednb-*.whl"))


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def megabytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def largest(sp: Path, n: int = 6) -> dict[str, int]:
    sizes = {p.name: megabytes(p) for p in sp.iterdir() if p.is_dir() and not p.name.endswith((".dist-info", "__pycache__"))}
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:n])


def install(venv: Path, requirements: list[str]) -> float:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = ["-c", str(ROOT / "constraints.txt")] if (ROOT / "constraints.txt").exists() else []  # as the README
    start = time.perf_counter()
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *pins, *requirements],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(name: str, venv: Path, wheel: Path, pandas_mb: int | None) -> dict:
    extra = PROFILES[name]
    requirements = ["pandas"] if extra is None else [f"fednb{extra} @ {wheel.as_uri()}"]
    seconds = install(venv, requirements)
    sp = site_packages(venv)
    mb = megabytes(sp)
    listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=json"], capture_output=True, text=True,
                            check=True).stdout
    row = {"profile": name, "site_packages_mb": mb, "distributions": len(json.loads(listed)),
           "install_s": round(seconds, 1), "largest_mb": largest(sp)}
    if pandas_mb is not None:
        row["over_pandas_mb"] = mb - pandas_mb
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="pandas,analyst,domain,all")
    parser.add_argument("--keep", type=Path, help="make the venvs here and leave them (default: a temporary folder)")
    a = parser.parse_args()
    names = [n for n in a.profiles.split(",") if n]
    unknown = set(names) - set(PROFILES)
    if unknown:
        parser.error(f"unknown profiles {sorted(unknown)}; choose from {sorted(PROFILES)}")
    if "pandas" in names:
        names.remove("pandas")
    names.insert(0, "pandas")  # the reference comes first
    work = a.keep or Path(tempfile.mkdtemp(prefix="fednb-sizes-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        wheel = build_wheel(work / "dist")
        pandas_mb = None
        for name in names:
            row = measure(name, work / name, wheel, pandas_mb)
            pandas_mb = row["site_packages_mb"] if name == "pandas" else pandas_mb
            print(json.dumps(row), flush=True)
            if a.keep is None:
                shutil.rmtree(work / name)
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
