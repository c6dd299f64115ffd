"""Errors a person can act on. Every message says what happened and what to do next."""

from __future__ import annotations

import os

FULL_TRACEBACK = "FEDNB_FULL_TRACEBACK"  # set to 1 to see fednb's own frames again (debugging fednb)


class FednbError(Exception):
    """Base class of every error fednb raises on purpose.

    In a notebook, IPython shows what :attr:`_render_traceback_` returns instead of the traceback
    (IPython's documented hook for exceptions that know how to show themselves): the error's class
    and message in one line, which names the domain, without fednb's internal frames. ``raise``
    still stops the cell and ``except`` still catches it.
    """

    def notebook_lines(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]

    @property
    def _render_traceback_(self):
        if os.environ.get(FULL_TRACEBACK, "") not in ("", "0"):
            raise AttributeError("_render_traceback_")  # IPython then prints the whole traceback
        return lambda: [f"\x1b[0;31m{line}\x1b[0m" if i == 0 else line for i, line in enumerate(self.notebook_lines())]


class InvalidInput(FednbError, ValueError):
    """The caller passed something fednb cannot use (a bad column, bins, arguments...)."""


class Conflict(InvalidInput):
    """The request, round or dataset is not in a state that allows this action (HTTP 409)."""


class NotFound(FednbError, LookupError):
    """A domain, dataset or request that does not exist (or is not visible to you)."""


class DomainError(FednbError):
    """A remote domain answered with an error or did not answer.

    ``domain`` names it so that the analyst knows whom to ask.
    """

    def __init__(self, domain: str, message: str, *, status: int | None = None):
        self.domain = domain
        self.message = message
        self.status = status
        super().__init__(f"[{domain}] {message}")


class DomainUnavailable(DomainError):
    """The domain is down, unreachable or too slow."""


class AuthenticationError(DomainError):
    """The token was refused: missing, wrong or revoked."""


class CertificateError(DomainError):
    """The domain's TLS certificate is not trusted (unknown authority, wrong host, expired)."""


class RequestDenied(DomainError):
    """The data owner denied the request; ``message`` is the owner's reason."""


class RequestBlocked(DomainError):
    """Disclosure control refused to release the result; ``message`` says why."""


class RequestFailed(DomainError):
    """The approved code ran and failed (an exception, a timeout, a limit)."""


class NotEnoughDomains(FednbError):
    """Fewer domains answered than ``min_domains`` requires.

    ``problems`` maps each missing domain to the reason it is missing.
    """

    def __init__(self, needed: int, got: int, problems: dict[str, str]):
        self.needed = needed
        self.got = got
        self.problems = dict(problems)
        lines = "\n".join(f"  - {d}: {why}" for d, why in self.problems.items())
        from fednb import i18n  # only here: a sandboxed job imports fednb.errors and nothing else of fednb's

        super().__init__(i18n.t("errors.not_enough_domains", got=got, needed=needed) + f"\n{lines}")

    def notebook_lines(self) -> list[str]:
        """One line when one domain is missing ("no result from hospital-a: blocked by ..."), else a
        first line and one line per missing domain."""
        name = type(self).__name__
        if len(self.problems) == 1:
            (domain, why), = self.problems.items()
            return [f"{name}: no result from {domain}: {why}"]
        return [f"{name}: {self.got} of the {self.needed} domain(s) needed gave a result"] + \
            [f"  {d}: {why}" for d, why in self.problems.items()]


class PolicyError(FednbError):
    """The domain's policy.toml is invalid; the message names the setting."""


class SandboxError(FednbError):
    """The sandbox could not be started or a job could not be run in it."""


class ModelError(FednbError):
    """A federated model could not be fitted; the message says what to change in the model or data."""


class SingularDesign(ModelError, ValueError):
    """The pooled design matrix is singular: collinear terms, or a column that is zero on every row."""


class PerfectSeparation(ModelError):
    """Some coefficients have no finite estimate: the outcome is predicted perfectly for some rows.

    ``terms`` names the coefficients that grow without bound.
    """

    def __init__(self, message: str, terms: list[str]):
        self.terms = list(terms)
        super().__init__(message)


class NotConverged(ModelError):
    """The iterations did not converge; ``result`` is the last iterate (``converged`` is False)."""

    def __init__(self, message: str, result=None):
        self.result = result
        super().__init__(message)


class MissingExtra(FednbError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""
