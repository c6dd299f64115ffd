"""Saved connections: named lists of domain URLs and the analyst's tokens for them.

Stored in ``$FEDNB_HOME/profiles.json`` (default ``~/.fednb``), readable by the user only. The
Jupyter server extension reads the same file, so tokens stay server-side, never in the browser.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fednb.errors import InvalidInput, NotFound

DEFAULT = "default"


def home() -> Path:
    return Path(os.environ.get("FEDNB_HOME") or Path.home() / ".fednb")


def _file() -> Path:
    return home() / "profiles.json"


def load_all() -> dict[str, dict]:
    try:
        return json.loads(_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidInput(f"{_file()} is not valid JSON ({exc}); fix or delete it") from None


def load(name: str = DEFAULT) -> list[dict]:
    """The profile's domains: ``[{"url": ..., "token": ...}, ...]``."""
    profiles = load_all()
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none yet"
        raise NotFound(f"no fednb profile {name!r} (profiles: {known}); save one with fednb.save_profile(...) "
                       "or `fednb profile add`")
    return list(profiles[name].get("domains", []))


def save(name: str, domains: list[dict]) -> Path:
    """Write (or replace) a profile. The file is created mode 0600: it holds tokens."""
    for d in domains:
        if not isinstance(d.get("url"), str):
            raise InvalidInput("each domain needs a 'url'")
    profiles = load_all()
    profiles[name] = {**profiles.get(name, {}),  # keeps the profile's owner credentials
                      "domains": [{"url": d["url"].rstrip("/"), "token": d.get("token")} for d in domains]}
    return _write(profiles)


def load_owner(name: str = DEFAULT) -> list[dict]:
    """The profile's owner credentials (for JupyterLab's review panel): ``[{"path": DIR}`` for a
    domain folder on this machine, or ``{"url": ..., "token": OWNER_TOKEN}]``; [] when there are none."""
    return list(load_all().get(name, {}).get("owner", []))


def save_owner(name: str, owners: list[dict]) -> Path:
    """Write (or replace) the owner credentials of profile ``name``; its analyst domains stay."""
    entries = []
    for o in owners:
        if isinstance(o.get("path"), str):
            entries.append({"path": str(Path(o["path"]).expanduser().resolve())})
        elif isinstance(o.get("url"), str) and isinstance(o.get("token"), str):
            entries.append({"url": o["url"].rstrip("/"), "token": o["token"]})
        else:
            raise InvalidInput("each owner entry needs a 'path' (a domain folder) or a 'url' and an owner 'token'")
    profiles = load_all()
    profiles[name] = {"domains": [], **profiles.get(name, {}), "owner": entries}
    return _write(profiles)


def _write(profiles: dict) -> Path:
    folder = home()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = _file().with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(profiles, f, indent=2)
    os.replace(tmp, _file())
    return _file()


def add_domain(name: str, url: str, token: str | None) -> Path:
    domains = [d for d in load_all().get(name, {}).get("domains", []) if d["url"] != url.rstrip("/")]
    return save(name, domains + [{"url": url, "token": token}])


def remove(name: str, url: str | None = None) -> None:
    profiles = load_all()
    if name not in profiles:
        raise NotFound(f"no fednb profile {name!r}")
    if url is None:
        del profiles[name]
    else:
        domains = [d for d in profiles[name].get("domains", []) if d["url"] != url.rstrip("/")]
        if len(domains) == len(profiles[name].get("domains", [])):
            raise NotFound(f"profile {name!r} has no domain {url}")
        profiles[name]["domains"] = domains
    _write(profiles)
