"""Trusted harnesses: the code that runs analyst code inside the locked-down child.

A harness is one class in one module of :mod:`fednb.domain.run.sandbox.harnesses`, decorated with
:func:`register`; the zygote imports every module there before it forks, so adding a harness
("training": payload in, JSON + safetensors out, kept alive across rounds) is adding one file.

Life of a harness in the child: ``prepare()`` (trusted, privileged: load the dataset) → lockdown →
``start()`` (runs the analyst's module body) → ``call(inputs, blob)`` once for a job, once per
round for a kept-alive worker.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from dataclasses import dataclass, field
from typing import Any, ClassVar

CODE_NAME = "<analysis>"  # the filename analyst code is compiled under
MAX_MESSAGE = 2000

_REGISTRY: dict[str, type[Harness]] = {}


@dataclass
class Reply:
    """One answer of a harness: status is "ok" | "error" | "memory" | "output_too_large"."""

    status: str
    fields: dict[str, Any] = field(default_factory=dict)  # JSON envelope fields ("value", ...)
    blob: bytes | None = None
    message: str = ""


class Harness:
    """Base class. ``spec`` is the job spec as JSON (see :meth:`JobSpec.to_json`)."""

    name: ClassVar[str] = ""

    def __init__(self, spec: dict):
        self.spec = spec
        self.t_call: float | None = None  # monotonic time the analyst's entry was first called

    def prepare(self) -> None:
        """Trusted, before lockdown: load what the job needs (never run analyst code here)."""

    def start(self) -> Reply | None:
        """After lockdown: run the analyst's module body. A Reply here is a failure."""
        return None

    def call(self, inputs: dict | None, blob: bytes | None) -> Reply:
        raise NotImplementedError


def register(cls: type[Harness]) -> type[Harness]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"harness name {cls.name!r} is empty or taken")
    _REGISTRY[cls.name] = cls
    return cls


def load_all() -> None:
    """Import every harness module (in the zygote, before it forks; once per process)."""
    global _loaded
    if _loaded:
        return
    from fednb.domain.run.sandbox import harnesses

    for mod in pkgutil.iter_modules(harnesses.__path__):
        importlib.import_module(f"{harnesses.__name__}.{mod.name}")
    _loaded = True


_loaded = False


def get(name: str) -> type[Harness]:
    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown harness {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    load_all()
    return sorted(_REGISTRY)


def describe(exc: BaseException) -> str:
    """"ExcType: message (line N of your function)" — the line inside the analyst's code only,
    never the harness's traceback or paths."""
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == CODE_NAME:
        line = exc.lineno
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == CODE_NAME:
            line = lineno
    try:
        text = str(exc)
    except Exception:  # a hostile __str__
        text = ""
    msg = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if line is not None:
        msg += f" (line {line} of your function)"
    return msg[:MAX_MESSAGE]


def failure(exc: BaseException) -> Reply:
    """A Reply for an exception raised by analyst code."""
    if isinstance(exc, MemoryError):
        return Reply("memory", message=f"the job ran out of its memory budget: {describe(exc)}")
    return Reply("error", message=describe(exc))
