"""Progress while waiting: a tqdm bar in a terminal, a widget bar in a notebook, after one second."""

from __future__ import annotations


class Progress:
    def __init__(self, total: int, desc: str, *, enabled: bool | None = None, initial: int = 0):
        self._bar = None
        if enabled is False or total == 0:
            return
        from tqdm.auto import tqdm

        # delay: a wait shorter than a second shows nothing; disable=None: no bar in a non-tty log
        self._bar = tqdm(total=total, desc=desc, initial=initial, delay=1.0, leave=False,
                         disable=None if enabled is None else not enabled, unit="domain")

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
