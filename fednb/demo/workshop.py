"""A workshop's domains: the demo's two hospitals and lithium plant, served together on one machine.

``fednb workshop serve DIR`` (Binder's ``start`` script, a teacher's laptop, the notebook tests)
creates them in ``DIR`` once, serves them and saves a profile (``workshop`` unless told otherwise)
with their URLs and a token for the person at this machine, plus the domain folders, so that the
same notebooks run anywhere::

    fed = fednb.connect(profile="workshop")        # the analyst's side
    folders = workshop.owner_folders("workshop")   # the owner's side: {domain: folder}, here

The folders are kept as the profile's ``owner`` entries (``[{"path": DIR}]``), the form JupyterLab's
review panel reads. A student whose teacher hosts the domains has a profile without them: there the
teacher reviews.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fednb.client import profile as profiles
from fednb.demo.owners import approving  # noqa: F401  (notebooks and tests use it from here)
from fednb.errors import FednbError, InvalidInput

PROFILE = "workshop"
# fednb.demo.data's two hospitals and the plant fednb.demo.tour.build_domains makes; named here, not
# imported, so that serving (Binder's start) never loads pandas: see serve
DOMAINS = ("hospital-a", "hospital-b", "ylb-uyuni")
PORT = 8701  # hospital-a on 8701, hospital-b on 8702, ylb-uyuni on 8703


def create(root: str | os.PathLike, token: str) -> dict[str, Path]:
    """The three demo domains in a new or empty folder ``root``, with ``token`` for the demo's analyst."""
    from fednb.demo.tour import build_domains

    root = Path(root).expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        raise InvalidInput(f"{root} is not empty and holds no workshop; give a new or empty folder")
    return build_domains(root, token)


def create_apart(root: str | os.PathLike, token: str) -> dict[str, Path]:
    """:func:`create` in a fresh interpreter that exits afterwards: making the data loads pandas and
    numpy (about 100 MB), which the process that then serves for hours (Binder's ``start``) should
    not keep. The token travels on stdin, never on a command line others can read."""
    done = subprocess.run([sys.executable, "-m", "fednb.demo.workshop", str(root)], input=token, text=True,
                          capture_output=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise FednbError(f"the workshop's domains could not be created in {root}: "
                         f"{lines[-1] if lines else f'exit status {done.returncode}'}")
    return {name: Path(root).expanduser().resolve() / name for name in DOMAINS}


def existing(root: str | os.PathLike) -> dict[str, Path] | None:
    """The workshop's domains in ``root`` if it has all three, else None."""
    root = Path(root).expanduser().resolve()
    folders = {name: root / name for name in DOMAINS}
    return folders if all((f / "policy.toml").is_file() for f in folders.values()) else None


def local_token(folders: dict[str, Path], profile: str = PROFILE) -> str:
    """The profile's token where every domain still accepts it; otherwise a new one, invited on each."""
    from fednb.domain import Domain
    from fednb.domain.domain import new_token

    saved = {d.get("token") for d in profiles.load_all().get(profile, {}).get("domains", [])}
    domains = [Domain(f) for f in folders.values()]
    try:
        for token in saved:
            if token and all(d.authenticate(token) for d in domains):
                return token
        from fednb.demo.tour import ANALYST  # with pandas, only when a new token is made

        token = new_token()
        for d in domains:
            d.invite(ANALYST, token=token)
        return token
    finally:
        for d in domains:
            d.close()


def save_profile(profile: str, urls: dict[str, str], token: str, folders: dict[str, Path]) -> Path:
    """Write ``profile`` with the domains' URLs and token and, as owner entries, their folders."""
    saved = profiles.load_all()
    saved[profile] = {**saved.get(profile, {}),
                      "domains": [{"url": urls[name].rstrip("/"), "token": token} for name in folders],
                      "owner": [{"path": str(folder)} for folder in folders.values()]}
    return profiles._write(saved)


def owner_folders(profile: str = PROFILE) -> dict[str, Path]:
    """``{domain name: folder}`` for the domains of ``profile`` that this machine hosts; ``{}`` when
    someone else (a teacher) hosts them."""
    from fednb.domain.review.policy import load_policy

    found = {}
    for entry in profiles.load_all().get(profile, {}).get("owner", []):
        folder = Path(entry.get("path", ""))
        if (folder / "policy.toml").is_file():
            found[load_policy(folder / "policy.toml").domain.name] = folder
    return found


def serve(root: str | os.PathLike, *, host: str = "127.0.0.1", port: int = PORT, profile: str = PROFILE):
    """Create (on first use) and start the three domains; saves ``profile``; returns the running
    :class:`~fednb.domain.process.DomainProcess` list (stop them when done)."""
    from fednb.demo.local import serve as serve_all
    from fednb.domain.domain import new_token

    folders = existing(root)
    if folders is None:
        token = new_token()
        folders = create_apart(root, token)
    else:
        token = local_token(folders, profile)
    servers = serve_all(list(folders.values()), host=host, port=port)  # all three start in parallel
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    urls = {name: f"http://{local}:{s.port}" for name, s in zip(folders, servers)}
    save_profile(profile, urls, token, folders)
    return servers


if __name__ == "__main__":  # create_apart's child: ROOT as argument, the analyst's token on stdin
    try:
        create(sys.argv[1], sys.stdin.read().strip())
    except FednbError as exc:
        sys.exit(str(exc))
