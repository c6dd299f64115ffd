"""A dataset as the analyst sees it across domains: metadata, mocks, federated statistics, requests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fednb.client.functions import Function, function
from fednb.client.http import DomainClient, _seg, fan_out, run
from fednb.client.request_args import parse_where, privacy_arg
from fednb.client.requests import FederatedRequest
from fednb.errors import InvalidInput, NotEnoughDomains
from fednb.federated import stats
from fednb.i18n import t

if TYPE_CHECKING:
    import pandas as pd

    from fednb.client.federation import Federation

DEFAULT_TIMEOUT = 60.0


class FederatedDataset:
    """``fed.dataset(name)``: the same-named dataset on every domain that has it."""

    def __init__(self, fed: Federation, name: str, clients: dict[str, DomainClient], meta: dict[str, dict]):
        self.fed, self.name, self.clients, self.meta = fed, name, clients, meta
        self._mock: pd.DataFrame | None = None

    def __repr__(self) -> str:
        rows = ", ".join(f"{d}: ~{m['rows']}" for d, m in self.meta.items())
        return f"<FederatedDataset {self.name!r} on {len(self.clients)} domain(s) ({rows} rows)>"

    @property
    def domains(self) -> list[str]:
        return list(self.clients)

    @property
    def rows(self) -> dict[str, int]:
        """Rounded row counts as each domain publishes them."""
        return {d: m["rows"] for d, m in self.meta.items()}

    @property
    def columns(self) -> pd.DataFrame:
        """The schema: one row per column and domain (dtypes, kinds, public levels and ranges, and the
        clamping bounds an owner set for noisy releases)."""
        import pandas as pd

        return pd.DataFrame([{"domain": d, **{k: c.get(k) for k in ("name", "dtype", "kind", "levels", "range", "missing",
                                                                      "bounds")}}
                             for d, m in self.meta.items() for c in m["columns"]])

    def column(self, name: str) -> dict:
        """Column metadata merged across domains (kinds must agree; levels and ranges are unions)."""
        found = [c for m in self.meta.values() for c in m["columns"] if c["name"] == name]
        if not found:
            raise InvalidInput(f"{self.name!r} has no column {name!r}")
        levels = [lvl for c in found for lvl in (c.get("levels") or [])]
        ranges = [c["range"] for c in found if c.get("range")]
        return {"name": name, "kind": found[0]["kind"], "levels": list(dict.fromkeys(levels)),
                "range": [min(r[0] for r in ranges), max(r[1] for r in ranges)] if ranges else None}

    @property
    def mock(self) -> pd.DataFrame:
        """Every domain's mock (synthetic look-alike, never real rows), with a ``domain`` column."""
        if self._mock is None:
            import pandas as pd

            found, problems = run(fan_out({d: c.mock(self.name) for d, c in self.clients.items()}))
            if problems and not found:  # every domain refused: say why, naming each
                raise next(iter(problems.values()))
            self.fed._warn(problems)
            frames = []
            for d, m in found.items():
                df = pd.DataFrame(m["data"], columns=m["columns"])
                for col, dtype in m["dtypes"].items():
                    try:
                        df[col] = pd.to_datetime(df[col]) if dtype.startswith("datetime") else df[col].astype(dtype)
                    except (TypeError, ValueError):
                        pass
                df.insert(0, "domain", d)
                frames.append(df)
            self._mock = pd.concat(frames, ignore_index=True)
        return self._mock

    # -- built-in statistics ---------------------------------------------------------------------
    # Every statistic takes ``epsilon=`` (with ``mechanism="laplace"|"gaussian"``, ``delta=``) to ask
    # for a differentially private release that spends that much of your budget on each domain (a
    # domain's policy may require noise anyway); count, sum and mean take ``secure=True`` to learn only
    # the sum over domains (secure aggregation), never one domain's value.
    def _builtin(self, name: str, args: dict, where: Any, timeout: float, description: str = "", *,
                 privacy: dict | None = None, secure: bool = False) -> FederatedRequest:
        args = {**args, **({"where": parse_where(where)} if where is not None else {})}
        self._check_names(args)
        if privacy:
            args["privacy"] = privacy
        if secure:
            args["secure"] = True
        body = {"dataset": self.name, "kind": "builtin", "name": name, "args": args,
                "description": description or f"{name} {args}"}
        req = self.fed.send(self.clients, body, wait=min(timeout, 60.0))
        if not req.done:
            req.wait(timeout)
        return req

    def _check_names(self, args: dict) -> None:
        """A column no domain has is a typo: said once, with the closest name, before anything is sent."""
        import difflib

        known = {c["name"] for m in self.meta.values() for c in m.get("columns", [])}
        used = [args.get(k) for k in ("column", "row", "col", "duration", "event", "by")]
        used += [c.get("column") for c in args.get("where", []) if isinstance(c, dict)] + list(args.get("columns", []))
        for name in used:
            if isinstance(name, str) and known and name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise InvalidInput(f"{self.name!r} has no column {name!r} on any domain{hint}")

    def _pooled(self, statistic: str, req: FederatedRequest, min_domains: int, pool, keys: tuple[str, ...],
                notes: list[str] | None = None, noisy_pool=None) -> stats.Pooled:
        from fednb.federated import noisy_pooling as noisy

        parts = req.raw_results()
        if len(parts) < min_domains:
            raise NotEnoughDomains(min_domains, len(parts), req.problems)
        if noisy.noisy(parts):
            value, se = noisy_pool(parts)
            spent = noisy.spent(parts)
            note = "noise added by " + ", ".join(f"{d} (epsilon {e:g})" for d, e in spent.items())
            return stats.Pooled(statistic, value, stats.by_domain_frame(parts, keys), req.problems,
                                [*(notes or []), note], req, se=se, epsilon=spent)
        return stats.Pooled(statistic, pool(parts), stats.by_domain_frame(parts, keys), req.problems,
                            notes or [], req)

    def _secure(self, statistic: str, kind: str, req: FederatedRequest, min_domains: int) -> stats.Pooled:
        """Pool a secure count, sum or mean: run secure aggregation over the domains that ran it."""
        import pandas as pd

        from fednb.federated import noisy_pooling as noisy
        from fednb.federated.secure_sum import Member, secure_sum

        done = {p.domain: p for p in req.parts if p.status == "done"}
        public = {d: p.state["result"] for d, p in done.items()}
        needed = max(min_domains, 2)
        if len(done) < needed:
            raise NotEnoughDomains(needed, len(done), {**req.problems, **(
                {"(secure aggregation)": "a secure sum needs at least 2 domains"} if len(done) < 2 else {})})
        layouts = {tuple(p["fields"]) for p in public.values()}
        if len(layouts) != 1:
            raise InvalidInput("the domains disagree on noise (some add it by policy, some do not); ask with "
                               "epsilon=... so that every domain adds noise, or without secure=True")
        fields = list(layouts.pop())
        result = secure_sum({d: Member(p.client, p.id) for d, p in done.items()})
        if len(result.included) < min_domains:
            raise NotEnoughDomains(min_domains, len(result.included), {**req.problems, **result.dropped})
        value, se = noisy.secure(dict(zip(fields, result.total.tolist())),
                                 {d: public[d] for d in result.included}, kind)
        spent = noisy.spent({d: public[d] for d in result.included})
        notes = [f"secure aggregation: only the sum over {len(result.included)} domains was revealed"]
        if spent:
            notes.append(t("note.noise", spent=", ".join(f"{d} (epsilon {e:g})" for d, e in spent.items())))
        if kind == "count":
            value = value if spent else int(round(value))
        return stats.Pooled(statistic, value, pd.DataFrame({"domain": result.included}),
                            {**req.problems, **result.dropped}, notes, req,
                            se=se if spent else None, epsilon=spent)

    def count(self, column: str | None = None, *, where: Any = None, min_domains: int = 1,
              timeout: float = DEFAULT_TIMEOUT, secure: bool = False, epsilon: float | None = None,
              mechanism: str = "laplace", delta: float | None = None) -> stats.Pooled:
        """Rows (or non-missing values of ``column``), pooled over domains."""
        req = self._builtin("count", {"column": column} if column else {}, where, timeout,
                            privacy=privacy_arg(epsilon, mechanism, delta), secure=secure)
        if secure:
            return self._secure("count", "count", req, min_domains)
        from fednb.federated import noisy_pooling as noisy

        return self._pooled(t("stat.count"), req, min_domains, stats.pool_count, ("n",), noisy_pool=noisy.count)

    def sum(self, column: str, *, where: Any = None, min_domains: int = 1, timeout: float = DEFAULT_TIMEOUT,
            secure: bool = False, epsilon: float | None = None, mechanism: str = "laplace",
            delta: float | None = None) -> stats.Pooled:
        req = self._builtin("sum", {"column": column}, where, timeout, privacy=privacy_arg(epsilon, mechanism, delta),
                            secure=secure)
        if secure:
            return self._secure(t("stat.sum", column=column), "sum", req, min_domains)
        from fednb.federated import noisy_pooling as noisy

        return self._pooled(t("stat.sum", column=column), req, min_domains, stats.pool_sum, ("n", "sum"), noisy_pool=noisy.total)

    def mean(self, column: str, *, where: Any = None, min_domains: int = 1, timeout: float = DEFAULT_TIMEOUT,
             secure: bool = False, epsilon: float | None = None, mechanism: str = "laplace",
             delta: float | None = None) -> stats.Pooled:
        req = self._builtin("mean", {"column": column}, where, timeout, privacy=privacy_arg(epsilon, mechanism, delta),
                            secure=secure)
        if secure:
            return self._secure(t("stat.mean", column=column), "mean", req, min_domains)
        from fednb.federated import noisy_pooling as noisy

        return self._pooled(t("stat.mean", column=column), req, min_domains, stats.pool_mean, ("n", "mean"), noisy_pool=noisy.mean)

    def var(self, column: str, *, ddof: int = 1, where: Any = None, min_domains: int = 1,
            timeout: float = DEFAULT_TIMEOUT, epsilon: float | None = None, mechanism: str = "laplace",
            delta: float | None = None) -> stats.Pooled:
        """Variance, exactly that of the pooled rows (``ddof=1``: the sample variance)."""
        from fednb.federated import noisy_pooling as noisy

        req = self._builtin("variance", {"column": column}, where, timeout, privacy=privacy_arg(epsilon, mechanism, delta))
        return self._pooled(t("stat.variance", column=column), req, min_domains,
                            lambda p: stats.pool_variance(p, ddof), ("n", "mean", "m2"),
                            noisy_pool=lambda p: noisy.variance(p, ddof))

    def std(self, column: str, **kwargs: Any) -> stats.Pooled:
        v = self.var(column, **kwargs)
        v.statistic, value = f"standard deviation of {column}", math.sqrt(v.value)
        if v.se is not None:
            v.se = v.se / (2 * value) if value > 0 else math.inf  # delta method: d sqrt(v) = dv / (2 sqrt(v))
        v.value = value
        return v

    def budget(self):
        """Your privacy budget on this dataset at each domain: allowance, spent, remaining (epsilon, delta)."""
        import pandas as pd

        path = f"/v1/datasets/{_seg(self.name)}/budget"
        found, problems = run(fan_out({d: c.call("GET", path) for d, c in self.clients.items()}))
        self.fed._warn(problems)
        cols = ["epsilon", "spent_epsilon", "remaining_epsilon", "delta", "spent_delta", "remaining_delta",
                "releases", "noisy", "training"]
        return pd.DataFrame([{"domain": d, **{k: b.get(k) for k in cols}} for d, b in found.items()],
                            columns=["domain", *cols])

    def histogram(self, column: str, bins: Sequence[float] | int = 10, *, where: Any = None, min_domains: int = 1,
                  timeout: float = DEFAULT_TIMEOUT, epsilon: float | None = None, mechanism: str = "laplace",
                  delta: float | None = None) -> stats.Pooled:
        """Counts over ``bins`` (edges, or a number of equal bins over the column's public range),
        plus the rows below and above; cells a domain suppressed are NA."""
        from fednb.federated import noisy_pooling as noisy

        edges = self._edges(column, bins)
        req = self._builtin("histogram", {"column": column, "bins": edges}, where, timeout,
                            privacy=privacy_arg(epsilon, mechanism, delta))
        pooled = self._pooled(t("stat.histogram", column=column), req, min_domains, stats.pool_histogram, ("n", "suppressed"),
                              noisy_pool=noisy.histogram)
        if pooled.value["count"].isna().any():
            pooled.notes.append(t("note.suppressed_histogram"))
        return pooled

    def _edges(self, column: str, bins: Sequence[float] | int) -> list[float]:
        if isinstance(bins, int):
            rng = self.column(column)["range"]
            if rng is None:
                raise InvalidInput(f"column {column!r} has no public range; pass explicit bin edges")
            step = (rng[1] - rng[0]) / bins
            return [rng[0] + i * step for i in range(bins + 1)]
        return [float(b) for b in bins]

    def quantile(self, column: str, q: float | Sequence[float] = 0.5, *, where: Any = None, min_domains: int = 1,
                 timeout: float = DEFAULT_TIMEOUT) -> stats.Pooled:
        """Quantiles of the pooled rows (numpy's linear rule) by iterative histogram refinement:
        exact where bins can close on one value, otherwise within ``error_bound`` (in ``by_domain``
        and ``value.attrs``)."""
        import pandas as pd

        from fednb.federated.quantiles import Answer, federated_quantiles

        qs = [q] if isinstance(q, (int, float)) else list(q)
        if any(not 0 <= x <= 1 for x in qs):
            raise InvalidInput("quantiles must be between 0 and 1")
        meta = self.column(column)
        if meta["range"] is None:
            raise InvalidInput(f"column {column!r} is not numeric with a public range")
        rounds: list[FederatedRequest] = []

        def ask(edges: list[float]) -> list[Answer]:
            req = self._builtin("quantiles", {"column": column, "bins": edges}, where, timeout)
            parts = req.raw_results()
            if len(parts) < min_domains:
                raise NotEnoughDomains(min_domains, len(parts), req.problems)
            rounds.append(req)
            return [Answer(p["n"], p["edges"], p["below"]) for p in parts.values()]

        values, bounds, n_rounds = federated_quantiles(ask, qs, tuple(meta["range"]),
                                                       integer=meta["kind"] == "integer")
        value = pd.Series(values, index=pd.Index(qs, name="q"), name=column)
        value.attrs["error_bound"] = dict(zip(qs, bounds))
        last = rounds[-1]
        by = stats.by_domain_frame(last.raw_results(), ("n",))
        notes = [f"{n_rounds} round(s) of counting; " + ", ".join(
            f"q={q:g}: {'exact' if b == 0 else f'within ±{b:.4g}'}" for q, b in zip(qs, bounds))]
        return stats.Pooled(t("stat.quantiles", column=column), value if len(qs) > 1 else float(values[0]), by,
                            last.problems, notes, last)

    def crosstab(self, row: str, col: str, *, where: Any = None, min_domains: int = 1,
                 timeout: float = DEFAULT_TIMEOUT, epsilon: float | None = None, mechanism: str = "laplace",
                 delta: float | None = None) -> stats.Pooled:
        """Counts by the public levels of two categorical columns (rarer levels as '(other)');
        cells a domain suppressed are NA."""
        from fednb.federated import noisy_pooling as noisy

        req = self._builtin("crosstab", {"row": row, "col": col}, where, timeout,
                            privacy=privacy_arg(epsilon, mechanism, delta))
        pooled = self._pooled(t("stat.crosstab", row=row, col=col), req, min_domains, stats.pool_crosstab, ("n", "suppressed"),
                              noisy_pool=noisy.crosstab)
        if pooled.value.isna().to_numpy().any():
            pooled.notes.append(t("note.suppressed_crosstab"))
        return pooled

    # -- survival ----------------------------------------------------------------------------------
    def kaplan_meier(self, duration: str, event: str, *, by: str | None = None, where: Any = None,
                     time_grid: Sequence[float] | int = 25, **kwargs: Any):
        """Pooled Kaplan–Meier curves with Greenwood bands (per group of ``by``) from counts each
        domain releases on ``time_grid`` (points, or that many equal steps over the public range).
        See :func:`fednb.federated.survival.kaplan_meier`."""
        from fednb.federated.survival import kaplan_meier

        return kaplan_meier(self, duration, event, by=by, where=where, time_grid=time_grid, **kwargs)

    def logrank(self, duration: str, event: str, by: str, *, where: Any = None,
                time_grid: Sequence[float] | int = 25, **kwargs: Any):
        """The pooled log-rank test of equal survival across the groups of ``by``."""
        from fednb.federated.survival import logrank

        return logrank(self, duration, event, by, where=where, time_grid=time_grid, **kwargs)

    # -- custom functions ------------------------------------------------------------------------
    def submit(self, fn: Function | Any, *, description: str = "", args: dict | None = None,
               max_runtime_s: float | None = None, columns: Sequence[str] | None = None) -> FederatedRequest:
        """Send a function's source for review on every domain; returns a request to follow.

        ``columns`` (or ``fednb.function(columns=...)``) declares the only columns it reads: the
        domains load just those, and their owners approve them with the code."""
        f = function(fn, columns=columns)
        limits: dict[str, Any] = {"max_runtime_s": max_runtime_s} if max_runtime_s else {}
        if f.columns is not None:
            self._check_names({"columns": f.columns})
            limits["columns"] = f.columns
        body = {"dataset": self.name, "kind": "function", "name": f.name, "code": f.source,
                "args": dict(args or {}), "description": description, "limits": limits}
        return self.fed.send(self.clients, body)
