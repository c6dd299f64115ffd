"""The teacher's guides (docs/workshop.md, docs/taller.md) name only commands and options that exist,
and both cover the same steps and the same failures."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from fednb.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = [DOCS / "workshop.md", DOCS / "taller.md"]


def _commands(text: str) -> list[list[str]]:
    """Every ``fednb ...`` command line in the guide's code (blocks and inline)."""
    found = []
    for line in re.findall(r"^\s*(fednb [^\n#`]+)", text, re.M) + re.findall(r"`(fednb [^`]+)`", text):
        words = shlex.split(line.replace("...", "X"))
        found.append([w for w in words if w not in ("&", "\\")])
    return found


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_command_in_the_guide_exists_with_its_options(guide):
    commands = _commands(guide.read_text())
    assert len(commands) > 15
    for words in commands:
        cmd: click.Command = main
        rest = words[1:]
        while isinstance(cmd, click.Group) and rest and rest[0] in cmd.commands:
            cmd, rest = cmd.commands[rest[0]], rest[1:]
        assert not isinstance(cmd, click.Group), f"{guide.name}: {' '.join(words)}: no such command"
        options = {o for p in cmd.params for o in getattr(p, "opts", [])}
        used = {w.split("=")[0] for w in rest if w.startswith("--")}
        assert used <= options, f"{guide.name}: {' '.join(words)}: unknown {sorted(used - options)}"


def test_both_guides_have_the_same_steps_and_troubleshooting_rows():
    en, es = (g.read_text() for g in GUIDES)
    assert re.findall(r"^\*\*\d+\.", en, re.M) == re.findall(r"^\*\*\d+\.", es, re.M)
    rows = [len(re.findall(r"^\| .* \| .* \| .* \|$", t, re.M)) for t in (en, es)]
    assert rows[0] == rows[1] > 12
    assert sorted(_flatten(_commands(en))) == sorted(_flatten(_commands(es)))


def _flatten(commands: list[list[str]]) -> list[str]:
    return [" ".join(w for w in c[:3]) for c in commands]
