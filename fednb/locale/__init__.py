"""The domain's messages in the analyst's language: gettext catalogs read with Babel.

Domain code marks a message with ``N_("at least {k} rows").format(k=k)``. ``N_`` returns the English
msgid unchanged (gettext's ``N_`` idiom, GNU gettext manual §4.7 "Special Cases of Translatable
Strings"), so what a domain stores, logs and audits is always English, whatever language the analyst
reads: an owner's audit log does not change language with its readers. Translation happens at the edge,
when an answer leaves for an analyst who asked for Spanish (``Accept-Language``, RFC 9110 §12.5.4):
:func:`translate` finds the catalog entry the English text was made from, reads the values back out
of it, and fills them into the Spanish msgstr (:mod:`.catalog`).

The catalogs are ``.po`` files in this folder (``LANG/LC_MESSAGES/fednb.po``), compiled in memory
with Babel's ``read_po`` on first use, so the wheel needs no build step. ``fednb_jupyterlab.json``
beside them is the JupyterLab panels' bundle, in the format JupyterLab's translation server reads
(found through the ``jupyterlab.locale`` entry point).
"""

from __future__ import annotations

from fednb.locale.catalog import LANGUAGES, negotiate, translate, translate_fields


def N_(message: str) -> str:
    """Mark ``message`` for translation; returns it unchanged (translated later, per reader)."""
    return message


__all__ = ["LANGUAGES", "N_", "negotiate", "translate", "translate_fields"]
