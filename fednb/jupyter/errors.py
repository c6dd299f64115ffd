"""Errors the handlers answer with a status and a message from the i18n table."""

from __future__ import annotations

from fednb.errors import NotFound


class ApiError(Exception):
    """An answer other than 200: ``status`` and the i18n ``key`` (with its fields) of the message."""

    def __init__(self, status: int, key: str, **fields: object):
        super().__init__(key)
        self.status, self.key, self.fields = status, key, fields


class UnknownDomain(NotFound):
    def __init__(self, domain: str):
        super().__init__(domain)
        self.domain = domain
