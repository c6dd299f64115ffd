"""Federated training of a torch model over the domains of a dataset.

The model class and the training function are sent as source, approved once by hash with a round
budget; each round sends the global weights to every domain concurrently, collects the updated
weights (safetensors) with sample counts and metrics, and aggregates them with a strategy
(FedAvg by default). A domain that drops out or times out is left out of that round and recorded;
fewer than ``min_domains`` answers stop the run with every reason. The global model is checkpointed
each round, so a restarted kernel resumes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fednb.client.functions import column_list, source_of
from fednb.client.http import DomainClient, gather, run
from fednb.client.requests import FederatedRequest, Part
from fednb.errors import DomainError, DomainUnavailable, InvalidInput, NotEnoughDomains
from fednb.learn import checkpoint as ckpt
from fednb.learn import weights as W
from fednb.learn.privacy import DPSGD
from fednb.learn.strategies import FedAdam, FedAvg, FedProx, Strategy, Update
from fednb.models import ROUND_FINAL, canonical_json

KEY_AHEAD = 16  # secure aggregation: rounds keyed in one exchange (a domain keeps 200 open sessions)
KEY_MAX_AGE = 1800.0  # seconds; keyed sessions older than this are keyed again (domains expire them at 3600)


class Trainer:
    """``Trainer(model, train_fn, data=ds, strategy=FedAvg(), rounds=10, min_domains=2).fit()``.

    ``train_fn(model, df, **config) -> dict`` trains in place on a domain and returns metrics
    (``loss``, ``accuracy``, ...; ``n`` if it used fewer rows than the dataset has). It receives
    ``config`` plus ``round`` (and ``proximal_mu``/``global_params`` under FedProx).
    ``evaluate_fn(model, df, **config) -> dict``, if given, scores the incoming global model on each
    domain (federated evaluation); ``central_eval(model) -> dict`` scores it on the analyst's side.
    ``helpers``: other functions or classes the model or training code uses, sent along.
    ``columns=["age", "bmi"]`` declares the only columns ``train_fn`` (and ``evaluate_fn``) read: each
    domain then loads only those into the training worker, and the list is part of the approved hash
    (as for :func:`fednb.function`); without it the worker gets every column.

    ``secure_aggregation=True``: the domains' updates are summed by secure aggregation (Bonawitz et
    al. 2017), so you learn only their weighted sum (for FedAvg, FedProx and FedAdam, which need no
    more). ``dp=DPSGD(epsilon=...)``: each domain trains with DP-SGD under its own accountant, and
    ``train_fn`` becomes a data function ``fn(df, **config) -> (inputs, targets)`` (see
    :mod:`fednb.learn.privacy`).
    """

    def __init__(self, model: nn.Module, train_fn: Callable, data: Any, *, strategy: Strategy | None = None,
                 rounds: int = 10, min_domains: int = 2, evaluate_fn: Callable | None = None,
                 central_eval: Callable[[nn.Module], dict] | None = None, config: dict | None = None,
                 model_args: dict | None = None, helpers: Sequence[Callable | type] = (),
                 round_timeout: float = 120.0, approval_timeout: float = 600.0, checkpoint: str | None = None,
                 description: str = "", on_round: Callable[[dict], None] | None = None,
                 progress: bool | None = None, seed: int = 0, secure_aggregation: bool = False,
                 dp: DPSGD | None = None, columns: Sequence[str] | None = None):
        if rounds < 1 or min_domains < 1:
            raise InvalidInput("rounds and min_domains must be at least 1")
        strategy = strategy or FedAvg()
        if secure_aggregation and not isinstance(strategy, (FedAvg, FedProx, FedAdam)):
            raise InvalidInput(f"{type(strategy).__name__} needs each domain's update, but secure aggregation "
                               "reveals only their sum; use FedAvg, FedProx or FedAdam")
        self.secure_aggregation, self.dp = secure_aggregation, dp
        self.columns = column_list(columns)
        self.model, self.train_fn, self.data = model, train_fn, data
        self.strategy = strategy
        self.rounds, self.min_domains = rounds, min_domains
        self.evaluate_fn, self.central_eval = evaluate_fn, central_eval
        self.config, self.model_args = dict(config or {}), dict(model_args or {})
        self.round_timeout, self.approval_timeout = round_timeout, approval_timeout
        self.checkpoint, self.description, self.seed = checkpoint, description, seed
        self.progress = progress
        self._listeners: list[Callable[[dict], None]] = [on_round] if on_round else []
        self.records: list[dict[str, Any]] = []
        self.request: FederatedRequest | None = None
        self._keyed: dict[int, tuple[Any, asyncio.Task, int]] = {}  # round -> its secure-sum session, keyed ahead
        self._keyed_at = 0.0
        self.body = self._body(helpers)
        self.code_hash = hashlib.sha256(canonical_json(self.body).encode()).hexdigest()

    # -- what is sent ----------------------------------------------------------------------------
    def _body(self, helpers: Sequence[Callable | type]) -> dict:
        parts = [source_of(h) for h in helpers] + [source_of(type(self.model)), source_of(self.train_fn)]
        if self.evaluate_fn is not None:
            parts.append(source_of(self.evaluate_fn))
        args = {"model": type(self.model).__name__, "model_args": self.model_args, "config": self.config,
                "evaluate": self.evaluate_fn.__name__ if self.evaluate_fn else None, "seed": self.seed}
        if self.secure_aggregation:
            args["secure_aggregation"] = True
        if self.dp is not None:
            args["dp"] = self.dp.args()
        limits: dict[str, Any] = {"max_rounds": self.rounds, "max_runtime_s": self.round_timeout}
        if self.columns is not None:
            limits["columns"] = self.columns
        return {"dataset": self.data.name, "kind": "training", "name": self.train_fn.__name__,
                "code": "\n\n".join(parts), "args": args,
                "description": self.description or f"train {args['model']} for {self.rounds} rounds",
                "limits": limits}

    # -- results ---------------------------------------------------------------------------------
    @property
    def history(self):
        """One row per round and domain (``domain == "global"`` for the aggregate)."""
        import pandas as pd

        return pd.DataFrame(self.records)

    def on_round(self, listener: Callable[[dict], None]) -> None:
        """Call ``listener(record)`` for every record as it happens (the live dashboard uses this)."""
        self._listeners.append(listener)

    def _record(self, record: dict) -> None:
        self.records.append(record)
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception:  # a display problem must never stop training
                pass

    # -- the run ---------------------------------------------------------------------------------
    def fit(self) -> tuple[nn.Module, Any]:
        """Train; returns (the trained model, the history DataFrame)."""
        display = self._display()
        try:
            first, parts = self._start()
            for number in range(first, self.rounds + 1):
                self._round(number, parts)
            run(gather(*(p.client.finish(p.id) for p in parts), return_exceptions=True))  # no more rounds
        finally:
            self._keyed.clear()  # sessions keyed for rounds that will not run: the domains expire them
            if display is not None:
                display.close()
        return self.model, self.history

    def _start(self) -> tuple[int, list[Part]]:
        saved = ckpt.load(self.checkpoint) if self.checkpoint else None
        if saved is not None and saved.code_hash == self.code_hash:
            self.model.load_state_dict(W.to_torch(saved.weights))
            self.strategy.load_state(saved.strategy)
            self.records = list(saved.history)
            by_url = {c.url: c for c in self.data.clients.values()}
            parts = [Part(by_url[url], id=rid, state={"status": "running"})
                     for url, rid in saved.requests.items() if url in by_url]
            return saved.round + 1, parts
        return 1, self._send_request()

    def _send_request(self) -> list[Part]:
        req = self.data.fed.send(self.data.clients, self.body)
        self.request = req
        active = req.wait_decided(self.approval_timeout)
        if len(active) < self.min_domains:
            raise NotEnoughDomains(self.min_domains, len(active),
                                   {p.domain: p.why or p.status for p in req.parts if p not in active})
        return active

    def _round(self, number: int, parts: list[Part]) -> None:
        config = self.strategy.configure(number)
        current = W.to_numpy(self.model.state_dict())
        blob = W.encode(self.model.state_dict(), {"round": number, "config": config})
        started = time.monotonic()
        if self.secure_aggregation:
            answers, secure = run(self._secure_round(parts, number, blob), self.round_timeout + 120)
        else:
            answers = run(gather(*(self._one(p, number, blob) for p in parts)), self.round_timeout + 60)
        updates, slowest = [], 0.0
        for part, (status, state, data, seconds) in zip(parts, answers):
            metrics = (state or {}).get("metrics") or {}
            evaluation = (state or {}).get("eval") or {}
            record = {"round": number, "domain": part.domain, "status": status, "n": (state or {}).get("n"),
                      "loss": metrics.get("loss"), "accuracy": metrics.get("accuracy"),
                      "eval_loss": evaluation.get("loss"), "eval_accuracy": evaluation.get("accuracy"),
                      "seconds": round(seconds, 4), "train_seconds": (state or {}).get("train_seconds"),
                      "reason": (state or {}).get("reason") if status != "ok" else None}
            self._record(record)
            if status == "ok" and not self.secure_aggregation:
                updates.append(Update(part.domain, W.decode(data), int(state["n"]), metrics))
            if status == "ok":
                slowest = max(slowest, float((state or {}).get("train_seconds") or 0.0))
        if self.secure_aggregation and secure is not None:
            for name, why in secure.dropped.items():
                self._record({**self._blank(number, name), "status": "dropped", "reason": why})
            updates = [Update(d, {}, 0, {}) for d in secure.included]
        if len(updates) < self.min_domains:
            problems = {r["domain"]: f"{r['status']}: {r['reason']}" for r in self.records[-len(parts):]
                        if r["status"] != "ok"}
            raise NotEnoughDomains(self.min_domains, len(updates), problems)
        if self.secure_aggregation:
            total_n = float(secure.total[-1])
            mean = _unflatten(secure.total[:-1] / total_n, current)
            updates = [Update("secure sum", mean, int(round(total_n)), {})]
        new = self.strategy.aggregate(current, updates)
        self.model.load_state_dict(W.to_torch(new))
        self._record(self._global_record(number, updates, started, slowest))
        if self.checkpoint:
            ckpt.save(self.checkpoint, ckpt.Checkpoint(
                round=number, code_hash=self.code_hash, requests={p.client.url: p.id for p in parts},
                history=self.records, weights=new, strategy=self.strategy.state()))

    def _global_record(self, number: int, updates: list[Update], started: float, slowest: float) -> dict:
        """The round as a whole; ``train_seconds`` is the slowest domain's local training."""
        n = sum(u.n for u in updates)

        def weighted(key: str) -> float | None:
            pairs = [(u.n, u.metrics.get(key)) for u in updates if isinstance(u.metrics.get(key), (int, float))]
            return float(sum(w * v for w, v in pairs) / sum(w for w, _ in pairs)) if pairs else None

        record = {"round": number, "domain": "global", "status": "ok", "n": n, "loss": weighted("loss"),
                  "accuracy": weighted("accuracy"), "eval_loss": None, "eval_accuracy": None,
                  "seconds": round(time.monotonic() - started, 4), "train_seconds": slowest, "reason": None}
        if self.central_eval is not None:
            self.model.eval()
            with torch.no_grad():
                scores = self.central_eval(self.model) or {}
            self.model.train()
            record["eval_loss"], record["eval_accuracy"] = scores.get("loss"), scores.get("accuracy")
        return record

    async def _secure_round(self, parts: list[Part], number: int, blob: bytes):
        """The round with secure aggregation: each domain sends its masked update as its round ends,
        then the analyst unmasks only the sum. The key exchange (Bonawitz et al. steps 1-2, which need
        no weights) is done for up to ``KEY_AHEAD`` rounds at once, in one call per domain and step,
        while the first of them trains."""
        from fednb.federated.secure_sum import SecureResult

        if number not in self._keyed or time.monotonic() - self._keyed_at > KEY_MAX_AGE:
            self._key_rounds(parts, number)
        session, keyed, position = self._keyed.pop(number)

        async def masked_inputs() -> None:  # runs while the domains train; each answers when its round ends
            failed = await asyncio.shield(keyed)  # shared by the rounds keyed together
            if position in failed:
                raise failed[position]
            await session.collect(wait=self.round_timeout)

        pending = asyncio.ensure_future(masked_inputs())
        answers = await gather(*(self._one(p, number, blob) for p in parts))
        try:
            await pending
            total = await session.unmask()
        except NotEnoughDomains as exc:
            self._keyed.clear()
            for part, answer in zip(parts, answers):
                if answer[0] == "ok":
                    exc.problems.setdefault(part.domain, "trained, but the secure sum could not be completed")
            raise
        if session.dropped:  # a domain that restarted lost its keys for the coming rounds: key them again
            self._keyed.clear()
        return answers, SecureResult(total, [session.names[i - 1] for i in sorted(session.masked)],
                                     {d: why for d, why in session.dropped.items()
                                      if d not in {p.domain for p, a in zip(parts, answers) if a[0] != "ok"}})

    def _key_rounds(self, parts: list[Part], first: int) -> None:
        """Start the key exchange of rounds ``first`` to ``first + KEY_AHEAD - 1`` (at most the last),
        one session each, on the I/O loop."""
        from fednb.federated.secure_sum import Member, SecureSum, exchange_keys_together

        numbers = range(first, min(self.rounds, first + KEY_AHEAD - 1) + 1)
        sessions = [SecureSum({p.domain: Member(p.client, p.id, n) for p in parts}) for n in numbers]
        task = asyncio.ensure_future(exchange_keys_together(sessions))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, if never awaited
        self._keyed = {n: (s, task, k) for k, (n, s) in enumerate(zip(numbers, sessions))}
        self._keyed_at = time.monotonic()

    def _blank(self, number: int, domain: str) -> dict:
        return {"round": number, "domain": domain, "status": "ok", "n": None, "loss": None, "accuracy": None,
                "eval_loss": None, "eval_accuracy": None, "seconds": None, "reason": None}

    async def _one(self, part: Part, number: int, blob: bytes) -> tuple[str, dict | None, bytes | None, float]:
        """One domain's round: ("ok" | "failed" | "timeout" | "dropped", state, weights, seconds)."""
        client: DomainClient = part.client
        t0 = time.monotonic()
        deadline = t0 + self.round_timeout
        try:
            state, data = await client.post_round(part.id, blob, wait=self.round_timeout)
            while state["status"] not in ROUND_FINAL and time.monotonic() < deadline:
                state = await client.round(part.id, number, wait=deadline - time.monotonic())
            if state["status"] == "done":
                if self.secure_aggregation:  # its update leaves the domain only masked, in the sum
                    return "ok", state, None, time.monotonic() - t0
                data = data if data is not None else await client.round_weights(part.id, number)
                return "ok", state, data, time.monotonic() - t0
            if state["status"] in ("failed", "blocked"):
                return state["status"], state, None, time.monotonic() - t0
            return "timeout", {**state, "reason": f"no answer within {self.round_timeout:g} s"}, None, time.monotonic() - t0
        except DomainUnavailable as exc:
            return "dropped", {"reason": exc.message}, None, time.monotonic() - t0
        except DomainError as exc:
            return "failed", {"reason": exc.message}, None, time.monotonic() - t0

    def _display(self):
        """Live progress: the notebook dashboard when there is one, else a progress bar."""
        if self.progress is False:
            return None
        from fednb import display

        if display.watch(self):  # the notebook's dashboard, when the UI can show one
            return None
        from fednb.client.progress import Progress

        bar = Progress(total=self.rounds, desc=f"training {self.body['args']['model']}", enabled=self.progress,
                       initial=0)
        self.on_round(lambda r: bar.update(1) if r["domain"] == "global" else None)
        return bar


def _unflatten(flat: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A flat vector (tensors in name order, as the domains encode them) back into ``like``'s shapes."""
    out, at = {}, 0
    for name in sorted(like):
        size = like[name].size
        out[name] = like[name].astype(np.float64) + flat[at:at + size].reshape(like[name].shape)
        at += size
    return out


def proximal_term(model: nn.Module, global_params: list[torch.Tensor], mu: float) -> torch.Tensor:
    """FedProx's mu/2 * ||w - w_global||^2, to add to the local loss (Li et al. 2020)."""
    total = torch.zeros(())
    for p, g in zip(model.parameters(), global_params):
        total = total + ((p - g) ** 2).sum()
    return 0.5 * mu * total


__all__ = ["Trainer", "proximal_term"]
