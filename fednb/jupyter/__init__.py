"""fednb's Jupyter face on the server and in the kernel.

- a jupyter-server extension (enabled by ``etc/jupyter/jupyter_server_config.d/fednb.json``) whose
  handlers under ``/fednb/api/`` act for the user with the tokens in their fednb profile, which stay
  on the server: the analyst's domains, datasets and requests; the owner's pending requests, their
  code and decisions (:mod:`fednb.jupyter.handlers`);
- the ``%%fednb submit`` cell magic and what JupyterLab's "Submit to federation…" runs in the kernel
  (:mod:`fednb.jupyter.magic`).

Importing this package loads neither jupyter_server nor IPython.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "fednb.jupyter"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from fednb.jupyter.handlers import setup_handlers

    setup_handlers(server_app)
