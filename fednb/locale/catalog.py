"""Reading English messages back into their catalog entries, and writing them out in Spanish.

A message leaves domain code already formatted (``"fewer than 10 rows"``). Each msgid with fields,
``"fewer than {k} rows"``, is turned into a pattern (``fewer than (?P<k>.+?) rows``); the first, most
specific, msgid whose pattern matches the whole text gives the values back, and they are written into
the msgstr. A value that is itself a catalog message (a reason inside a reason) is translated too.
A text no msgid matches (an analyst's own words, a message not yet marked) stays English.
"""

from __future__ import annotations

import re
import string
from functools import cache, lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOMAIN = "fednb"
DEFAULT = "en"
LANGUAGES = ("en", "es")
_DEPTH = 3  # how deep reasons nest inside reasons


def po_path(language: str) -> Path:
    return HERE / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def catalog(language: str) -> dict[str, str]:
    """msgid -> msgstr of one language's ``.po`` (untranslated and fuzzy entries left out)."""
    from babel.messages.pofile import read_po  # Babel: only a domain that answers in Spanish needs it

    path = po_path(language)
    if language == DEFAULT or not path.is_file():
        return {}
    with path.open("rb") as fh:
        messages = read_po(fh, locale=language, domain=DOMAIN)
    return {m.id: m.string for m in messages if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}


def fields(text: str) -> list[tuple[str, str | None]]:
    """``[(literal, field name or None), ...]`` of a format string."""
    return [(literal, name) for literal, name, _, _ in string.Formatter().parse(text)]


def _pattern(msgid: str) -> re.Pattern:
    parts, seen = [], set()
    for literal, name in fields(msgid):
        parts.append(re.escape(literal))
        if name is None:
            continue
        if name in seen:
            parts.append(f"(?P={name})")
        else:
            seen.add(name)
            parts.append(f"(?P<{name}>.+?)")
    return re.compile("".join(parts), re.DOTALL)


@cache
def _patterns(language: str) -> tuple[tuple[re.Pattern | None, str, str], ...]:
    """(pattern or None for a plain msgid, msgid, msgstr), most literal text first."""
    entries = []
    for msgid, msgstr in catalog(language).items():
        literal = sum(len(lit) for lit, _ in fields(msgid))
        has_fields = any(name is not None for _, name in fields(msgid))
        entries.append((literal, _pattern(msgid) if has_fields else None, msgid, msgstr))
    entries.sort(key=lambda e: -e[0])
    return tuple((p, i, s) for _, p, i, s in entries)


def _fill(msgstr: str, values: dict[str, str], language: str, depth: int) -> str:
    out = []
    for literal, name in fields(msgstr):
        out.append(literal)
        if name is not None:
            out.append(_translate(values[name], language, depth + 1))
    return "".join(out)


def _translate(text: str, language: str, depth: int) -> str:
    if depth > _DEPTH:
        return text
    table = catalog(language)
    if text in table and "{" not in text:
        return table[text]
    for pattern, _msgid, msgstr in _patterns(language):
        if pattern is None:
            continue
        found = pattern.fullmatch(text)
        if found:
            return _fill(msgstr, found.groupdict(), language, depth)
    return text


@lru_cache(maxsize=4096)
def translate(text: str, language: str) -> str:
    """``text``, an English domain message, in ``language`` ("en", "es"); English when unknown."""
    if language == DEFAULT or not text:
        return text
    return _translate(text, language, 0)


MESSAGE_FIELDS = ("error", "reason")


def translate_fields(value, language: str):
    """``value`` (decoded JSON) with every ``error``/``reason`` string in it translated: the human
    sentences of an answer, never its numbers, names or results."""
    if language == DEFAULT:
        return value
    if isinstance(value, dict):
        return {k: (translate(v, language) if k in MESSAGE_FIELDS and isinstance(v, str)
                    else translate_fields(v, language)) for k, v in value.items()}
    if isinstance(value, list):
        return [translate_fields(v, language) for v in value]
    return value


def negotiate(accept_language: str | None) -> str:
    """The best of :data:`LANGUAGES` for an ``Accept-Language`` header (RFC 9110 §12.5.4); English
    when the header is missing, malformed, or names only languages fednb does not speak."""
    best, best_q = DEFAULT, 0.0
    for item in (accept_language or "").split(",")[:20]:
        tag, _, params = item.strip().partition(";")
        code = tag.strip()[:2].lower()
        q = 1.0
        found = re.search(r"q\s*=\s*([^;,\s]*)", params)
        if found:
            try:
                q = float(found.group(1)[:5])
            except ValueError:
                continue  # a malformed weight: that language is not asked for
        if code in LANGUAGES and q > best_q:
            best, best_q = code, q
    return best
