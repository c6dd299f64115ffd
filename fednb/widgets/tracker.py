"""A live view of a :class:`~fednb.client.requests.FederatedRequest`: one row per domain with its
state (pending, approved, denied and the owner's reason, running, done and what it released,
blocked and why, failed and the message).

It follows the request from a background thread (``request.watch()``), so the owners' decisions
appear under the cell without running it again; it stops when every domain is final.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import ipywidgets as w

from fednb import codec
from fednb.i18n import t
from fednb.widgets import _html as h

if TYPE_CHECKING:
    from fednb.client.requests import FederatedRequest, Part


def detail(part: Part) -> str:
    """What a person needs to know about one domain's copy, in words."""
    status, reason = part.status, part.state.get("reason")
    if status == "denied":
        return t("why.denied", reason=reason)
    if status == "blocked":
        return t("why.blocked", reason=reason)
    if status == "failed":
        return t("why.failed", reason=reason)
    if part.problem:
        return part.problem
    if status == "pending":
        return t("why.waiting")
    if status == "approved":
        return t("why.approved", reason=reason) if reason else t("status.approved")
    if status == "running":
        return t("why.running")
    return reason or ""


def released(part: Part) -> str:
    if part.status != "done":
        return ""
    try:
        return h.value_html(codec.decode(part.state.get("result"))) + verified_mark(part)
    except Exception:  # an encoding this version does not know: show it raw
        return h.esc(part.state.get("result")) + verified_mark(part)


VERIFIED = {"en": ("signed ✓", "The domain's signed receipt covers exactly this result. Key: "),
            "es": ("firmado ✓", "El recibo firmado por el dominio cubre exactamente este resultado. Clave: ")}


def verified_mark(part: Part) -> str:
    """A small mark when the domain's signed receipt matches the result shown (see Part.verified)."""
    if not part.verified:
        return ""
    from fednb.i18n import get_language, normalize

    label, tip = VERIFIED.get(normalize(get_language()), VERIFIED["en"])
    fingerprint = part.receipts[-1].get("fingerprint", "")
    return (f' <span class="fednb-verified" title="{h.esc(tip + fingerprint)}" style="color:#2e7d32;'
            f'font-size:85%;white-space:nowrap">{h.esc(label)}</span>')


def rows_html(request: FederatedRequest) -> str:
    rows = [[f'<b style="white-space:nowrap">{h.esc(p.domain)}</b>', f"<code>{h.esc(p.id or '–')}</code>",
             h.badge(p.status), h.esc(detail(p)), released(p)] for p in request.parts]
    return h.table([t("common.domain"), t("common.request"), t("common.state"), t("common.details"),
                    t("common.result")], rows, css_class="fednb-tracker-table")


def title_html(request: FederatedRequest) -> str:
    kind = t(f"tracker.kind.{request.kind}") if request.kind in ("builtin", "function", "training") else request.kind
    text = t("tracker.title", kind=kind, name=request.name, dataset=request.dataset)
    about = f"<div>{h.muted(request.description)}</div>" if request.description else ""
    return h.heading(text) + about


def footer_html(request: FederatedRequest, following: bool) -> str:
    total = len(request.parts)
    final = sum(p.final for p in request.parts)
    when = time.strftime("%H:%M:%S")
    if final == total:
        text = t("tracker.all_final", total=total)
    elif following:
        text = t("tracker.following", final=final, total=total)
    else:
        text = t("tracker.stopped")
    return h.muted(f"{text} · {t('common.updated', time=when)}")


class RequestTracker(w.VBox):
    """``display(req)`` (or ``req`` as a cell's last line) shows this; it updates itself."""

    def __init__(self, request: FederatedRequest, *, follow: bool = True):
        self.request = request
        self._follow = follow
        self._lock = threading.Lock()
        self._title = w.HTML(title_html(request))
        self._table = w.HTML()
        total = len(request.parts)
        self._progress = w.IntProgress(value=0, min=0, max=max(total, 1), layout=w.Layout(width="240px"))
        self._footer = w.HTML()
        super().__init__([self._title, self._table, w.HBox([self._progress, self._footer],
                                                            layout=w.Layout(align_items="center"))])
        self.add_class("fednb-tracker")
        request.on_change(self._on_change)
        self.render()
        if follow:
            request.watch()

    def _on_change(self, _request: FederatedRequest) -> None:
        self.render()

    def render(self) -> None:
        """Redraw from the request's current state (called from the watcher's thread)."""
        with self._lock:
            watcher = self.request._watcher
            following = self._follow and not (watcher is not None and watcher.stopped)
            table = rows_html(self.request)
            if table != self._table.value:
                self._table.value = table
            self._progress.value = sum(p.final for p in self.request.parts)
            done = self.request.done
            self._progress.bar_style = "success" if done and all(p.status == "done" for p in self.request.parts) \
                else "warning" if done else ""
            self._footer.value = footer_html(self.request, following)

    def close(self) -> None:
        self.request.off_change(self._on_change)
        super().close()
