"""Following a request in the background: it stops once every domain is final, and waits longer
between turns while nothing changes."""

from __future__ import annotations

import time

import fednb
from fednb.client.watch import Watcher


def test_the_watcher_stops_when_final_and_backs_off_while_pending(fresh_domain):
    fed = fednb.connect([fresh_domain.url], token=fresh_domain.token)
    req = fed.dataset("patients").submit(fednb.function("def n(df):\n    return len(df)\n"), description="n")
    turns = []
    req.on_change(lambda r: turns.append(time.monotonic()))
    watcher = Watcher(req, first=0.2, longest=0.8).start()
    time.sleep(2.5)
    gaps = [b - a for a, b in zip(turns, turns[1:])]
    assert len(turns) >= 3 and gaps[-1] > gaps[0] + 0.2, gaps  # turns lengthen while nothing happens
    owner = fresh_domain.domain()
    owner.deny(req.parts[0].id, "no")
    owner.close()
    started = time.monotonic()
    while watcher.running and time.monotonic() - started < 120:  # bounds a hang only
        time.sleep(0.05)
    assert not watcher.running and req.status == {fresh_domain.name: "denied"}
    assert req.watch() is req._watcher and not req._watcher.running  # nothing to follow any more
    fed.close()
