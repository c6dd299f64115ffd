"""A browser of a :class:`~fednb.client.federation.Federation`: its domains (up or down, sandbox
isolation, version) and their datasets (schema, row counts, a preview of the synthetic mock).

It renders at once and fills itself in from a background thread, so a slow or hung domain never
holds the notebook; the refresh button asks again.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from fednb.i18n import label, t
from fednb.widgets import _html as h

if TYPE_CHECKING:
    from fednb.client.federation import Federation

MOCK_ROWS = 5


def domains_html(status_rows: list[dict]) -> str:
    rows = []
    for r in status_rows:
        state = "up" if r["up"] else "down"
        rows.append([f"<b>{h.esc(r['domain'])}</b>", h.esc(r["url"]), h.badge(state, t(f"fed.{state}")),
                     h.esc(label("isolation", r.get("isolation")) or "–"), h.esc(r.get("version") or "–"),
                     h.esc(r.get("problem") or "")])
    return h.table([t("common.domain"), t("fed.url"), t("fed.status"), t("fed.isolation"), t("fed.version"),
                    t("fed.problem")], rows, css_class="fednb-domains")


def datasets_by_name(catalog: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """{dataset: {domain: metadata}} from {domain: [metadata]}."""
    out: dict[str, dict[str, dict]] = {}
    for domain, listing in catalog.items():
        for meta in listing:
            out.setdefault(meta["name"], {})[domain] = meta
    return dict(sorted(out.items()))


def _levels_or_range(col: dict) -> str:
    if col.get("levels"):
        levels = [str(v) for v in col["levels"]]
        return ", ".join(levels[:8]) + (" …" if len(levels) > 8 else "")
    if col.get("range"):
        lo, hi = col["range"]
        return f"{h.number(lo)} – {h.number(hi)}"
    return ""


def dataset_html(name: str, per_domain: dict[str, dict]) -> str:
    """Row counts and descriptions per domain, then the schema (from the first domain, which the
    others share; a column some domain lacks is named)."""
    counts = h.table([t("common.domain"), t("common.rows"), t("common.description")],
                     [[h.esc(d), t("common.approx_rows", rows=h.number(m["rows"])), h.esc(m.get("description", ""))]
                      for d, m in per_domain.items()], css_class="fednb-dataset-domains")
    seen: dict[str, dict] = {}
    for meta in per_domain.values():
        for col in meta["columns"]:
            seen.setdefault(col["name"], col)
    schema_rows = []
    for col in seen.values():
        missing = t("fed.yes") if col.get("missing") else t("fed.no")
        unit = f" ({h.esc(col['unit'])})" if col.get("unit") else ""
        schema_rows.append([f"<code>{h.esc(col['name'])}</code>{unit}", h.esc(col["dtype"]), h.esc(label("kind", col["kind"])),
                            h.esc(_levels_or_range(col)), missing])
    schema = h.table([t("fed.column"), t("fed.dtype"), t("fed.kind"), t("fed.values"), t("fed.missing")],
                     schema_rows, css_class="fednb-schema")
    return counts + h.heading(t("fed.schema"), 4) + schema


def mock_html(mock: Any, rows: int = MOCK_ROWS) -> str:
    """The first rows of each domain's mock."""
    if "domain" in getattr(mock, "columns", ()):
        parts = [part.head(rows) for _, part in mock.groupby("domain", sort=False)]
        import pandas as pd

        mock = pd.concat(parts, ignore_index=True)
    return mock.to_html(index=False, classes="fednb-mock", border=0, max_cols=30)


class _Collect:
    """Stands in for the federation where a dataset would warn about a domain: keeps the problems
    for the widget to show instead (warnings from a background thread land in whichever cell runs)."""

    def __init__(self, fed: Federation):
        self.fed = fed
        self.problems: dict[str, Any] = {}

    def _warn(self, problems: dict[str, Any]) -> None:
        self.problems.update(problems)


class FederationView(w.VBox):
    """``display(fed)`` (or just ``fed`` as a cell's last line) shows this."""

    def __init__(self, fed: Federation, *, background: bool = True):
        self.fed = fed
        self.status_rows: list[dict] = []
        self.catalog: dict[str, list[dict]] = {}
        self._lock = threading.Lock()
        self._title = w.HTML(h.heading(t("fed.title", n=len(fed.domains)), 2))
        self._refresh = w.Button(description=t("common.refresh"), icon="refresh", layout=w.Layout(width="auto"))
        self._refresh.on_click(lambda _: self.refresh(background=True))
        self._domains = w.HTML(h.muted(t("common.loading")))
        self._picker = w.Dropdown(description=t("fed.pick"), options=[], layout=w.Layout(width="max-content"),
                                  style={"description_width": "initial"})
        self._picker.observe(self._picked, names="value")
        self._dataset = w.HTML()
        self._mock = w.HTML()
        super().__init__([
            w.HBox([self._title, self._refresh], layout=w.Layout(align_items="center", justify_content="space-between")),
            w.HTML(h.heading(t("fed.domains"))), self._domains,
            w.HTML(h.heading(t("fed.datasets"))), self._picker, self._dataset,
            w.HTML(h.heading(t("fed.mock"), 4)), self._mock,
        ])
        self.add_class("fednb-federation")
        self.refresh(background=background)

    # -- loading -----------------------------------------------------------------------------------
    def refresh(self, *, background: bool = True) -> None:
        if background:
            threading.Thread(target=self._load, name="fednb-federation-view", daemon=True).start()
        else:
            self._load()

    def _load(self) -> None:
        with self._lock:
            try:  # a down domain is shown in the table, not warned about
                self.status_rows = self.fed.status.to_dict("records")
                self.catalog = self.fed.catalog(quiet=True)
            except Exception as exc:  # shown in the widget; the notebook goes on
                self._domains.value = h.esc(t("magic.error", message=exc))
                return
        self._domains.value = domains_html(self.status_rows)
        names = datasets_by_name(self.catalog)
        options = [(f"{n} ({t('fed.on_domains', domains=', '.join(per))})", n) for n, per in names.items()]
        if not options:
            self._dataset.value = h.muted(t("fed.no_datasets"))
        current = self._picker.value
        self._picker.options = options
        if options:
            chosen = current if current in names else options[0][1]
            if self._picker.value == chosen:
                self._show(chosen)
            else:
                self._picker.value = chosen  # observed: shows it

    def _picked(self, change: dict) -> None:
        if change["new"]:
            self._show(change["new"])

    def _show(self, name: str) -> None:
        per_domain = datasets_by_name(self.catalog).get(name, {})
        self._dataset.value = dataset_html(name, per_domain)
        self._mock.value = h.muted(t("common.loading"))
        threading.Thread(target=self._load_mock, args=(name, per_domain), daemon=True).start()

    def _load_mock(self, name: str, per_domain: dict[str, dict]) -> None:
        from fednb.client.dataset import FederatedDataset

        quiet = _Collect(self.fed)
        try:
            mock = FederatedDataset(quiet, name, {d: self.fed.client(d) for d in per_domain}, per_domain).mock
            if self._picker.value == name:  # the analyst may have picked another one meanwhile
                self._mock.value = mock_html(mock) + "".join(
                    f"<div>{h.muted(f'{d}: {exc.message}')}</div>" for d, exc in quiet.problems.items())
        except Exception as exc:
            self._mock.value = h.esc(t("magic.error", message=exc))
