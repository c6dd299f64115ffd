"""The owner's written policy: one readable ``policy.toml`` per domain.

Thresholds are named in plain words, after DataSHIELD's disclosure filters (``nfilter.subset``,
``nfilter.tab``); :data:`TEMPLATE` documents each setting with its default and the reason for it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fednb.errors import PolicyError
from fednb.models import BUILTINS


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DomainSection(_Section):
    name: str
    description: str = ""


class ReviewSection(_Section):
    auto_approve: list[str] = Field(default_factory=lambda: list(BUILTINS))
    reuse_approvals: bool = True
    max_pending_per_analyst: int = Field(50, ge=1)


class DisclosureSection(_Section):
    min_cohort: int = Field(10, ge=1)
    min_cell_count: int = Field(5, ge=1)
    rows_per_value: int = Field(10, ge=1)
    round_counts_to: int = Field(10, ge=1)
    max_output_bytes: int = Field(1_000_000, ge=1_000)
    max_free_text: int = Field(40, ge=0, le=10_000)
    significant_digits: int = Field(4, ge=1, le=15)
    unchecked_output: list[str] = Field(default_factory=list)
    show_error_text: bool = False
    # magnitude rules and regression checks of the built-ins, named as in ACRO/SACRO
    safe_nk_n: int = Field(2, ge=1)
    safe_nk_k: float = Field(0.9, gt=0, le=1)
    safe_pratio_p: float = Field(0.1, ge=0, lt=1)
    safe_dof_threshold: int = Field(10, ge=1)
    max_parameters_per_row: float = Field(0.33, gt=0, le=1)
    hidden_cell_interval: int = Field(5, ge=1)

    def allows_unchecked(self, dataset: str) -> bool:
        """The owner lets custom code on ``dataset`` release output the checker cannot judge."""
        return dataset in self.unchecked_output or "*" in self.unchecked_output


class SandboxSection(_Section):
    cpu_seconds: float = Field(60, gt=0)
    wall_seconds: float = Field(120, gt=0)
    memory_mb: int = Field(2048, ge=64)
    max_file_mb: int = Field(64, ge=1)
    min_isolation: Literal["strong", "standard", "minimal"] = "standard"
    workers: int = Field(2, ge=1, le=64)
    namespaces: bool = True
    jobs_memory_mb: int = Field(0, ge=0)
    jobs_cpus: float = Field(0, ge=0, le=1024)
    idle_seconds: float = Field(120, ge=0, le=86400)
    max_rows_loaded: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _shared_cap_fits_one_job(self) -> SandboxSection:
        if 0 < self.jobs_memory_mb < self.memory_mb:
            raise ValueError(f"jobs_memory_mb ({self.jobs_memory_mb}) is below memory_mb ({self.memory_mb}): "
                             "no job could use its own budget; raise it or use 0 (workers x memory_mb)")
        if 0 < self.jobs_cpus < 0.01:
            raise ValueError("jobs_cpus must be 0 (one per worker) or at least 0.01")
        return self

    def shared_cap(self) -> tuple[int, float]:
        """Memory (MiB) and CPUs for all jobs together; 0 in the policy means one job's worth per worker."""
        return (self.jobs_memory_mb or self.workers * self.memory_mb, self.jobs_cpus or float(self.workers))


class LearningSection(_Section):
    enabled: bool = True
    max_rounds: int = Field(200, ge=1)
    max_model_mb: int = Field(50, ge=1)
    idle_minutes: float = Field(15, gt=0)
    warm_torch: bool = False


class RequestsSection(_Section):
    builtin_workers: int = Field(2, ge=1, le=16)
    builtin_cpu_seconds: float = Field(15, gt=0, le=3600)
    builtin_wall_seconds: float = Field(20, gt=0, le=3600)
    builtin_memory_mb: int = Field(1024, ge=128)
    max_argument_bytes: int = Field(32_000, ge=1000, le=2_000_000)
    builtin_worker_idle_seconds: float = Field(120, gt=0, le=86400)
    builtin_worker_ready: bool = True


class EngineSection(_Section):
    """How built-ins scan the rows (:mod:`fednb.domain.data.engines`)."""

    memory_limit: str = "1GB"
    threads: int = Field(2, ge=1, le=256)

    @model_validator(mode="after")
    def _readable_size(self) -> EngineSection:
        from fednb.domain.data.engines.base import memory_bytes

        if memory_bytes(self.memory_limit) < 64 * 2**20:
            raise ValueError(f"memory_limit {self.memory_limit!r} is below 64MiB; the engine needs at least that")
        return self


NOISY_BUILTINS = ("count", "sum", "mean", "variance", "histogram", "crosstab", "kaplan_meier")


class Allowance(_Section):
    epsilon: float = Field(ge=0)
    delta: float = Field(0.0, ge=0, lt=1)


class PrivacySection(_Section):
    noisy: list[str] = Field(default_factory=list)
    epsilon: float = Field(3.0, ge=0)
    delta: float = Field(1e-6, ge=0, lt=1)
    query_epsilon: float = Field(0.1, gt=0)
    max_query_epsilon: float = Field(1.0, gt=0)
    training: Literal["none", "dp"] = "none"
    secure_min_domains: int = Field(2, ge=2)
    budgets: dict[str, Allowance] = Field(default_factory=dict)

    def allowance(self, analyst: str, dataset: str) -> Allowance:
        """The analyst's budget on the dataset: the most specific of "analyst/dataset", "analyst/*",
        "*/dataset", else the section's own epsilon and delta."""
        for key in (f"{analyst}/{dataset}", f"{analyst}/*", f"*/{dataset}"):
            if key in self.budgets:
                return self.budgets[key]
        return Allowance(epsilon=self.epsilon, delta=self.delta)


class SecureDataset(_Section):
    secure_only: bool = False


class SecureAggregationSection(_Section):
    min_peers: int = Field(2, ge=1)
    datasets: dict[str, SecureDataset] = Field(default_factory=dict)

    def secure_only(self, dataset: str) -> bool:
        rules = self.datasets.get(dataset)
        return rules is not None and rules.secure_only


class AccessSection(_Section):
    failed_token_limit: int = Field(20, ge=1)
    failed_token_window_seconds: float = Field(60, gt=0)
    lockout_seconds: float = Field(60, gt=0)


class TransparencySection(_Section):
    name_analysts: bool = False


class MockSection(_Section):
    tier: Literal[0, 1] = 0
    tiers: dict[str, Literal[0, 1]] = Field(default_factory=dict)
    rows: int = Field(500, ge=10, le=100_000)
    serve_unreviewed: Literal["none", "tier-0"] = "tier-0"
    max_closer_to_real: float = Field(0.6, gt=0.5, le=1.0)

    def tier_of(self, dataset: str) -> int:
        return self.tiers.get(dataset, self.tier)


class Policy(_Section):
    domain: DomainSection
    review: ReviewSection = Field(default_factory=ReviewSection)
    disclosure: DisclosureSection = Field(default_factory=DisclosureSection)
    sandbox: SandboxSection = Field(default_factory=SandboxSection)
    learning: LearningSection = Field(default_factory=LearningSection)
    privacy: PrivacySection = Field(default_factory=PrivacySection)
    access: AccessSection = Field(default_factory=AccessSection)
    transparency: TransparencySection = Field(default_factory=TransparencySection)
    mock: MockSection = Field(default_factory=MockSection)
    secure_aggregation: SecureAggregationSection = Field(default_factory=SecureAggregationSection)
    requests: RequestsSection = Field(default_factory=RequestsSection)
    engine: EngineSection = Field(default_factory=EngineSection)

    def auto_approves(self, kind: str, name: str) -> bool:
        """Only built-in aggregates can be approved by policy; custom code always waits for a person."""
        return kind == "builtin" and name in self.review.auto_approve


TEMPLATE = '''\
# Policy of the fednb data domain "{name}".
# Every setting is written out with its default and the reason for it. Edit the values, then
# restart `fednb domain serve`. A misspelt setting stops the server with an error naming it.

[domain]
name = "{name}"
# Shown to analysts next to the domain's name.
description = "{description}"

[review]
# Built-in aggregates that run without waiting for a person. Their outputs are aggregates that still
# pass the disclosure checks below. Custom functions and training always wait for a person.
# Default: all built-ins. Remove a name to review it by hand; [] to review everything.
auto_approve = {auto_approve}
# An analyst re-submitting code whose SHA-256 you already approved (same dataset, same static
# arguments) runs it without a new review. Any change to the code is a new, pending request.
# Default: true.
reuse_approvals = true
# Pending requests one analyst may have at a time; more are refused. Default: 50 (stops flooding).
max_pending_per_analyst = 50

[requests]
# Built-ins evaluate the analyst's arguments (formulas, filters, bins) in worker processes that the
# domain stops at these limits, so one pathological request never freezes the domain; a request that
# hits one fails with the reason and is not run again.
# Built-ins that may run at the same time (one per analyst at a time). Default: 2.
builtin_workers = 2
# CPU seconds one built-in may use. Default: 15.
builtin_cpu_seconds = 15
# Wall-clock seconds one built-in may take before it is stopped. Default: 20.
builtin_wall_seconds = 20
# Memory one built-in may use, MiB. Default: 1024.
builtin_memory_mb = 1024
# Largest arguments of one request, bytes of JSON; they are stored with the request. Default: 32000.
max_argument_bytes = 32000
# A built-in worker that ran jobs and is unused this many seconds is stopped, which returns the memory
# its jobs took; the next built-in starts one again. Default: 120.
builtin_worker_idle_seconds = 120
# Keep one fresh built-in worker started, its datasets opened, while the domain is idle, so the first
# statistic answers as fast as the next (a sleeping fork of the server: no CPU, a few MB of its own).
# false: an idle domain holds no worker. Default: true.
builtin_worker_ready = true

[engine]
# Built-ins run as SQL in DuckDB over each dataset's Parquet file, reading only the columns they
# need and spilling to DIR/.engine-spill when a query needs more memory than this.
# Memory DuckDB may use for the built-ins ("512MB", "2GB"), shared by requests.builtin_workers;
# one worker's share is at most half of requests.builtin_memory_mb (the rest is Python). Default: "1GB".
memory_limit = "1GB"
# Threads one query may use. Default: 2.
threads = 2

[disclosure]
# Fewest rows any released aggregate may come from (DataSHIELD nfilter.subset). An exact built-in
# whose rows differ from those of any earlier exact release on the dataset (any analyst's) by fewer
# than this many rows is refused too: subtracting the two would describe those rows. Default: 10.
min_cohort = 10
# Table cells (histograms, crosstabs) with fewer rows than this, but more than 0, are suppressed,
# together with enough other cells that they cannot be worked out from totals (nfilter.tab).
# Categories rarer than this are also left out of the mock and the metadata. Default: 5.
min_cell_count = 5
# Each value a built-in releases must stand for at least this many rows on average (a Cox model's sums per interval).
# Custom code is checked value by value instead (fednb.table / fednb.stat, see SECURITY.md). Default: 10.
rows_per_value = 10
# Row counts shown in dataset listings are rounded to a multiple of this. Default: 10.
round_counts_to = 10
# Largest result, in bytes, a job may return. Default: 1000000 (1 MB).
max_output_bytes = 1000000
# Characters of free text (strings, keys, labels that are not column names or category levels, and
# one per list element or dict entry) one custom result or one round's metric names may carry. Text
# can hold rows: this is a channel of that many characters per result. Default: 40.
max_free_text = 40
# Significant digits kept in sums, means and training metrics from custom code, so one number cannot
# carry several values packed in its digits. Default: 4.
significant_digits = 4
# Datasets (or "*") whose custom code may release numbers the domain cannot check row by row (not
# fednb.table/fednb.stat values): you then rely on your review alone. Default: [] (none).
unchecked_output = []
# Show analysts the text of exceptions their code raises. Off, they see only the exception type and
# the line of their code: exception text is chosen by the code and could carry data. Default: false.
show_error_text = false
# Magnitude rules on every sum and mean a built-in releases (names and defaults as ACRO/SACRO, the
# output checkers of trusted research environments): refused when the safe_nk_n largest values make
# up more than safe_nk_k of the total ((n,k)-dominance: one department, one pond). Default: 2 and 0.9.
safe_nk_n = 2
safe_nk_k = 0.9
# p% rule: refused when the total less its two largest values is under safe_pratio_p of the largest
# (the second-largest contributor could estimate the largest too closely). Default: 0.1.
safe_pratio_p = 0.1
# Regressions (glm) need at least this many residual degrees of freedom (rows - parameters), so the
# fit cannot pass through the rows. Default: 10 (ACRO's safe_dof_threshold).
safe_dof_threshold = 10
# ...and at most this many parameters per row: no saturated model (DataSHIELD's nfilter.glm). Default: 0.33.
max_parameters_per_row = 0.33
# After suppression, each hidden table cell must still be unknown to within this many rows given
# everything the table shows (its total, its margins), checked by linear programming; more cells are
# hidden until it is, else the table is refused. Default: 5.
hidden_cell_interval = 5

[sandbox]
# Limits for approved custom code. It runs in a locked-down subprocess (see SECURITY.md).
# CPU seconds per job. Default: 60.
cpu_seconds = 60
# Wall-clock seconds per job before it is killed. Default: 120.
wall_seconds = 120
# Memory per job, MiB. Default: 2048.
memory_mb = 2048
# Largest file a job may write in its temporary folder, MiB. Default: 64.
max_file_mb = 64
# Weakest isolation under which custom code may run at all: "strong", "standard" or "minimal".
# `fednb domain serve` reports the level that holds on this machine. Default: "standard".
min_isolation = "standard"
# Jobs that may run at the same time. Default: 2.
workers = 2
# Run jobs in their own network, mount and pid namespaces where the host allows (the "strong" level).
# false leaves landlock and seccomp alone ("standard"), for hosts where namespaces misbehave. Default: true.
namespaces = true
# Memory all running jobs may use together, MiB, enforced by one Linux cgroup (v2) for the domain's
# jobs where the host allows it (`fednb domain serve` says whether it is in force); one job past it is
# stopped. 0: workers x memory_mb. Default: 0.
jobs_memory_mb = 0
# CPU cores all running jobs may use together (same cgroup), so jobs never take the whole machine
# from the server. 0: one core per worker. Default: 0.
jobs_cpus = 0
# The sandbox's fork server (about 100 MB with pandas) is stopped after its start-up self-test and
# after this many seconds without a custom job; the next job starts it again (about a second, with a
# new self-test), so an idle domain holds none. 0 keeps it running. Default: 120.
idle_seconds = 120
# Custom code is refused, before it runs, on a dataset with more rows than this (never cut to a
# sample: the first rows are not a fair one). Built-ins are not capped. 0: no cap. Default: 0.
max_rows_loaded = 0

[learning]
# Federated learning: a training request is approved once, for its code and its round budget; each
# round trains the analyst's torch model on this domain's data in the sandbox and releases only the
# updated weights (same parameters as the model: never data). Default: true.
enabled = true
# The largest round budget one request may ask for. Default: 200.
max_rounds = 200
# Largest model (weights), MB, accepted or released per round. Default: 50.
max_model_mb = 50
# A training worker idle this many minutes is stopped (the next round starts a new one). Default: 15.
idle_minutes = 15
# Import torch once when the server starts, so each training request's first round starts in
# milliseconds instead of ~3 s; costs ~2.5 s of start-up and ~200 MB of memory. Default: false.
warm_torch = false

[privacy]
# Differential privacy (Dwork & Roth, "The Algorithmic Foundations of Differential Privacy", 2014):
# a noisy release adds noise scaled to how much one person could change it, and spends part of the
# analyst's budget epsilon (and delta) on that dataset. Noisy releases that would overspend it are
# refused. `fednb domain budget DIR` shows what each analyst has spent.
# Built-ins released ONLY with noise; analysts may ask for noise on the others too. Any of
# "count", "sum", "mean", "variance", "histogram", "crosstab", "kaplan_meier". sum, mean and variance need clamping
# bounds on the column, which you choose and analysts see: `fednb domain set-bounds DIR DATASET COLUMN LO HI`.
# Noisy releases skip the small-cell rules above: the noise protects small groups, and an exact
# threshold would leak outside the budget. Default: [] (exact aggregates under the rules above, as before).
noisy = []
# The strongest setting: every built-in noisy, all under the budget below. Exact-only built-ins
# (quantiles, glm) are then refused, since they would release exact counts and sums. Use it in
# place of the line above:
# noisy = ["count", "sum", "mean", "variance", "histogram", "crosstab"]
# Budget per analyst and dataset, for the life of the domain (a new dataset name is a new budget).
# Default: 3.0 (around what published DP deployments allow per person; 0 allows no noisy release).
epsilon = 3.0
# Chance that the epsilon guarantee does not hold, spent by the Gaussian mechanism and DP training.
# Keep it well under 1 / (number of rows). Default: 1e-6.
delta = 1e-6
# Epsilon one noisy built-in spends when the analyst does not say. Default: 0.1.
query_epsilon = 0.1
# Most epsilon one noisy built-in may spend. Default: 1.0.
max_query_epsilon = 1.0
# Training: "none" releases each round's weights after the checks above; "dp" accepts only training
# with DP-SGD, whose noise, clipping and accounting are this domain's and spend the budget above.
# Default: "none".
training = "none"
# Secure aggregation: this domain's masked inputs are unmasked only in a sum over at least this many
# domains (Bonawitz et al. 2017), so the analyst never learns this domain's own numbers. Default: 2.
secure_min_domains = 2

# Budgets for particular analysts or datasets, most specific first: "analyst/dataset",
# "analyst/*", "*/dataset". For example:
# [privacy.budgets]
# "alice/patients" = {{ epsilon = 5.0, delta = 1e-6 }}
# "*/genomes" = {{ epsilon = 0.5 }}

[access]
# A client address that presents this many unknown or revoked tokens within the window below is
# refused (HTTP 429) for lockout_seconds, valid tokens included. Other addresses are unaffected.
# Default: 20 failures in 60 seconds, then 60 seconds refused (slows guessing and log flooding).
failed_token_limit = 20
failed_token_window_seconds = 60
lockout_seconds = 60

[transparency]
# `fednb domain publish` exports the audit log for anyone to check. Analysts appear in it under
# stable pseudonyms; true prints their names next to the pseudonyms (only with their consent).
# Default: false.
name_analysts = false

[mock]
# Each dataset's mock: synthetic rows analysts see and dry-run code on. `fednb domain mock-report
# DIR DATASET` shows how useful and how risky it is; `fednb domain approve-mock DIR DATASET` serves it.
# How realistic: 0 draws every column on its own (only what the metadata shows: coarsened
# distributions of single columns); 1 also keeps pairwise correlations (a Gaussian copula), which
# makes dry runs behave like the real data and reveals one number per pair of columns. Default: 0.
tier = 0
# Other tiers for particular datasets, e.g. {{ patients = 1 }}. Default: {{}}.
tiers = {{}}
# Rows in a mock: the dataset's row count rounded like the listing, at most this. Default: 500.
rows = 500
# Which mocks are served before you approve them: "tier-0" (their columns are drawn independently
# from what the metadata already shows) or "none" (every mock waits for you). Tier-1 mocks always
# wait. Default: "tier-0".
serve_unreviewed = "tier-0"
# A mock is not served when a shadow mock built from half the rows sits closer to that half than to
# the other in more than this share of rows (0.5 = no closer to the people it came from than to
# anyone; higher means it memorised them). Default: 0.6.
max_closer_to_real = 0.6

[secure_aggregation]
# Secure sums (Bonawitz et al. 2017) run only with peer domains you pinned from a roster the owners
# exchange (`fednb domain trust DIR ROSTER`): this domain signs its keys and masks only toward keys
# signed by a pinned peer, so an analyst cannot pose as the other domains.
# Fewest pinned peers (other domains) a secure sum of a secure-only dataset must include: with one,
# that peer could subtract its own input from the sum. Default: 2.
min_peers = 2
# Datasets whose numbers leave this domain only inside secure sums with pinned peers: counts, sums
# and means only with `secure=True`, training only with `secure_aggregation=True`, every other
# request refused. Default: none. For example:
# [secure_aggregation.datasets.patients]
# secure_only = true
'''


def render_template(name: str, description: str = "") -> str:
    auto = "[" + ", ".join(f'"{b}"' for b in BUILTINS) + "]"
    desc = description.replace("\\", "\\\\").replace('"', '\\"')
    return TEMPLATE.format(name=name, description=desc, auto_approve=auto)


def load_policy(path: Path) -> Policy:
    """Read and validate ``policy.toml``; any problem is a :class:`PolicyError` naming the setting."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path} is missing; create the domain with `fednb domain init`") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path} is not valid TOML: {exc}") from None
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyError(f"{path}: {problems}") from None
    noisy = sorted(set(policy.privacy.noisy) - set(NOISY_BUILTINS))
    if noisy:
        raise PolicyError(f"{path}: privacy.noisy names {noisy}; noise is available for {list(NOISY_BUILTINS)}")
    if policy.privacy.max_query_epsilon < policy.privacy.query_epsilon:
        raise PolicyError(f"{path}: privacy.query_epsilon is above privacy.max_query_epsilon")
    unknown = sorted(set(policy.review.auto_approve) - set(BUILTINS))
    if unknown:
        raise PolicyError(
            f"{path}: review.auto_approve names {unknown}, which are not built-ins {list(BUILTINS)}"
        )
    return policy
