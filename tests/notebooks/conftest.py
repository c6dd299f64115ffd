"""The workshop's three domains, served as ``binder/start`` serves them, with the profile the
notebooks read written in a temporary FEDNB_HOME."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fednb.demo import workshop as ws
from fednb.domain.process import DomainProcess


@dataclass
class Workshop:
    root: Path  # the domain folders
    home: Path  # FEDNB_HOME holding the profile
    servers: list[DomainProcess] = field(default_factory=list)

    @property
    def profile(self) -> dict:
        return json.loads((self.home / "profiles.json").read_text())[ws.PROFILE]

    @property
    def urls(self) -> dict[str, str]:
        return {s.path.name: s.url for s in self.servers}

    @property
    def token(self) -> str:
        return self.profile["domains"][0]["token"]


@pytest.fixture(scope="package")
def workshop(tmp_path_factory) -> Iterator[Workshop]:
    root, home = tmp_path_factory.mktemp("workshop"), tmp_path_factory.mktemp("fednb-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDNB_HOME", str(home))
        servers = ws.serve(root / "domains", port=0)
    yield Workshop(root / "domains", home, servers)
    for s in servers:
        s.stop()
