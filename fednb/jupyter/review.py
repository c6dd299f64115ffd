"""What an owner needs to review a request: the version of the same function they approved
before, and what changed since (Fed-BioMed's rule: a change is a new review).

"The same function" is the same analyst, kind and name (on any dataset of the domain). "Approved
before" means decided by the owner (not by policy) and not denied: approved, running, done, or
finished badly after approval (failed, blocked), since the owner read and accepted that code.
"""

from __future__ import annotations

import difflib
from datetime import datetime

APPROVED_BY_OWNER = ("approved", "running", "done", "failed", "blocked")


def previous_version(current: dict, listing: list[dict]) -> dict | None:
    """The newest earlier request in ``listing`` that the owner approved for the same function."""
    candidates = [r for r in listing
                  if r["id"] != current["id"] and r["analyst"] == current["analyst"] and r["kind"] == current["kind"]
                  and r["name"] == current["name"] and r.get("decided_by") == "owner"
                  and r["status"] in APPROVED_BY_OWNER and r["created_at"] < current["created_at"]]
    return max(candidates, key=lambda r: r["created_at"], default=None)


def diff_lines(old: str, new: str, *, context: int = 3) -> list[dict[str, str]]:
    """A unified diff as [{"op": "+"|"-"|" "|"@", "text"}], without the file header lines."""
    out = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=context):
        if line.startswith(("---", "+++")):
            continue
        op = "@" if line.startswith("@@") else line[:1] or " "
        out.append({"op": op, "text": line if op == "@" else line[1:]})
    return out


def comparison(current: dict, previous: dict | None) -> dict | None:
    """The panel's "changes since you approved" block, or None when there is nothing to compare."""
    if previous is None or not current.get("code"):
        return None
    return {"id": previous["id"], "status": previous["status"],
            "date": datetime.fromtimestamp(previous.get("decided_at") or previous["created_at"]).strftime("%Y-%m-%d %H:%M"),
            "identical": (previous.get("code") or "") == current["code"],
            "diff": diff_lines(previous.get("code") or "", current["code"])}
