"""``fednb demo``: three local domains and the whole analyst/owner tour, end to end, in under a minute."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import click
import numpy as np
import pandas as pd

from fednb.demo import data

ANALYST = "ana"


def _step(title: str) -> None:
    click.secho(f"\n== {title}", fg="cyan", bold=True)


def _owner(text: str) -> None:
    click.secho(f"   [owner] {text}", fg="magenta")


def build_domains(root: Path, token: str) -> dict[str, Path]:
    """Create hospital-a, hospital-b (dataset 'patients') and ylb-uyuni (dataset 'brine_batches')."""
    from fednb.demo.local import create_domain

    sources = root / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    specs = [(name, "patients", data.hospital(name), f"Public hospital '{name}' (synthetic)",
              "Adult admissions: age, sex, bmi, smoker, systolic_bp, diabetes, readmitted within 30 days")
             for name in data.HOSPITALS]
    specs.append(("ylb-uyuni", "brine_batches", data.brine_batches(), "Lithium plant, Salar de Uyuni (synthetic)",
                  "Evaporation pond batches: Li concentration, temperature, days, pond, recovery yield"))
    for name, dataset, frame, about, describe in specs:
        create_domain(root, name, frame, dataset, description=about, dataset_description=describe,
                      token=token, analyst=ANALYST).close()
    from fednb.domain.release.trusted_peers import pin_each_other

    pin_each_other([root / name for name in data.HOSPITALS])  # the owners exchanged a roster
    return {name: root / name for name, *_ in specs}


def run_demo(workdir: Path | None = None, serve: bool = False) -> int:
    """Run the tour; returns a process exit status. Servers are always stopped, even on Ctrl-C."""
    from fednb.demo.local import serve as serve_all
    from fednb.domain.domain import new_token

    started = time.monotonic()
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fednb-demo-"))
    if workdir and root.exists() and any(root.iterdir()):
        raise click.UsageError(f"{root} is not empty; give an empty or new folder")
    servers: list = []
    try:
        _step("1. Data owners create their domains (their data stays on their machines)")
        token = new_token()
        folders = build_domains(root, token)
        for name, folder in folders.items():
            _owner(f"fednb domain init {folder} --name {name}; add-dataset; invite {ANALYST}")
        _step("2. Each owner serves their domain on 127.0.0.1")
        servers = serve_all(list(folders.values()))  # all three start in parallel
        for s in servers:
            click.echo(f"   {s.banner}")
        failures = tour(servers, folders, token)
        _step(f"Done in {time.monotonic() - started:.1f} s")
        if serve:
            click.echo("   Domains keep running; connect with:")
            click.echo(f"   fednb.connect({[s.url for s in servers]!r}, token={token!r})")
            click.echo("   Ctrl-C stops them.")
            with contextlib.suppress(KeyboardInterrupt):
                while all(s.alive() for s in servers):
                    time.sleep(1)
        return 1 if failures else 0
    except KeyboardInterrupt:
        click.echo("\ninterrupted; stopping the domains")
        return 130
    finally:
        for s in servers:
            s.stop()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)


def tour(servers, folders: dict[str, Path], token: str) -> list[str]:
    """The analyst's tour, with the owners' steps in between. Returns the checks that failed."""
    import fednb
    from fednb.domain import Domain

    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        click.secho(f"   {'ok ' if ok else 'FAIL'} {what}", fg="green" if ok else "red")
        if not ok:
            failures.append(what)

    truth = pd.concat([data.hospital(h) for h in data.HOSPITALS], ignore_index=True)
    _step("3. The analyst connects and browses: metadata and mocks only")
    fed = fednb.connect([s.url for s in servers], token=token)
    click.echo(_indent(fed.datasets.to_string(index=False)))
    patients = fed.dataset("patients")
    click.echo("   mock rows (synthetic look-alikes, never real rows):")
    click.echo(_indent(patients.mock.head(4).to_string(index=False)))

    _step("4. Pooled statistics: built-ins auto-approved by policy, pooled exactly")
    n = patients.count()
    check(n.value == len(truth), f"patients: {n.value} (concatenated data: {len(truth)})")
    mean = patients.mean("age")
    check(np.isclose(mean.value, truth.age.mean(), rtol=1e-12), f"mean age {mean.value:.4f} (true {truth.age.mean():.4f})")
    var = patients.var("bmi")
    check(np.isclose(var.value, truth.bmi.var(), rtol=1e-9), f"variance of bmi {var.value:.4f} (true {truth.bmi.var():.4f})")
    ct = patients.crosstab("smoker", "readmitted")
    click.echo(_indent(ct.value.to_string()))
    true_ct = pd.crosstab(truth.smoker, truth.readmitted)
    check(bool((ct.value.to_numpy(dtype=float) == true_ct.to_numpy()).all()), "crosstab smoker x readmitted equals the pooled table")
    q = patients.quantile("age", [0.25, 0.5, 0.75])
    true_q = truth.age.quantile([0.25, 0.5, 0.75]).to_numpy()
    bounds = np.array(list(q.value.attrs["error_bound"].values()))
    check(bool(np.all(np.abs(q.value.to_numpy() - true_q) <= bounds + 1e-9)),
          f"age quartiles {q.value.round(2).tolist()} (true {true_q.tolist()}; {q.notes[0]})")
    hist = patients.histogram("bmi", [15, 20, 25, 30, 35, 40])
    click.echo(_indent(hist.value.to_string(index=False)))
    _regression(patients, check)
    _survival(patients, check)

    _step("5. A custom function: tried on the mock, submitted, reviewed by each owner, run in the sandbox")

    @fednb.function
    def readmission_by_risk(df):
        """Readmission rate and group size by smoking and diabetes."""
        return fednb.table(df, by=["smoker", "diabetes"], value="readmitted", agg="mean")

    click.echo("   dry run on the mocks:")
    click.echo(_indent(str(fednb.dry_run(readmission_by_risk, patients)["hospital-a"]["mean"])))
    req = patients.submit(readmission_by_risk, description="Readmission rate by smoking and diabetes")
    click.echo(f"   submitted: {req.status}")
    for name in ("hospital-a", "hospital-b"):
        d = Domain(folders[name])
        pending = d.requests(status="pending")[0]
        _owner(f"{name}: fednb domain show {pending.id} -> {pending.kind}:{pending.name}, sha256 {pending.code_hash[:16]}...")
        d.approve(pending.id, "aggregates by group; fine")
        _owner(f"{name}: fednb domain approve {pending.id}")
        d.close()
    results = req.wait(60).result(min_domains=2)
    for domain, value in results.items():
        click.echo(f"   {domain}: " + ", ".join(f"{k}={v:.3f}" for k, v in value["mean"].items()))
    check(set(results) == {"hospital-a", "hospital-b"}, "both hospitals released the approved function's result")
    again = patients.submit(readmission_by_risk, description="same code again").wait(30)
    check(all(s == "done" for s in again.status.values()), "re-submitting the approved hash runs without a new review")

    _learning_step(patients, folders, check)

    _step("6. A request the owner denies, with a reason")

    @fednb.function
    def first_rows(df):
        return df.head(20)

    denied = patients.submit(first_rows, description="just a look")
    for name in ("hospital-a", "hospital-b"):
        d = Domain(folders[name])
        rid = d.requests(status="pending")[0].id
        d.deny(rid, "returns individual patient rows; ask for aggregates")
        _owner(f"{name}: fednb domain deny {rid} --reason 'returns individual patient rows; ask for aggregates'")
        d.close()
    denied.wait(30)
    for domain, why in denied.problems.items():
        click.echo(f"   {domain}: {why}")
    check(all("denied" in w for w in denied.problems.values()), "the analyst sees each owner's reason")

    _step("7. A query on too few people is blocked by disclosure control")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            patients.mean("bmi", where="age >= 93 and smoker == True")
        check(False, "a small cohort must be blocked")
    except fednb.NotEnoughDomains as exc:
        for domain, why in exc.problems.items():
            click.echo(f"   {domain}: {why}")
        check(all("blocked" in w for w in exc.problems.values()), "blocked everywhere, with the reason")

    _step("8. The lithium plant: the same tools on plant data")
    brine = fed.dataset("brine_batches")
    y = brine.mean("recovery_yield")
    true_y = data.brine_batches().recovery_yield.mean()
    check(np.isclose(y.value, true_y, rtol=1e-12), f"mean recovery yield {y.value:.4f} (true {true_y:.4f})")
    h = brine.histogram("li_concentration_gl", [0.2, 0.5, 0.8, 1.1, 1.4])
    click.echo(_indent(h.value.to_string(index=False)))
    liners = brine.kaplan_meier("days_to_liner_failure", "liner_failed", by="pond", time_grid=[90, 180, 270, 360])
    click.echo("   share of batches whose pond liner had not failed, by pond (Kaplan–Meier):")
    click.echo(_indent(liners.table.pivot(index="time", columns="group", values="survival").round(3).to_string()))
    truth_b = data.brine_batches()
    p1 = truth_b[truth_b.pond == "P1"]
    check(bool(np.isclose(liners.survival("P1").iloc[0], 1 - ((p1.days_to_liner_failure <= 90) & (p1.liner_failed == 1)).sum()
                          / len(p1), rtol=1e-12)), "pond P1's liner survival at 90 days equals the plant's own count")

    _step("9. Oversight: every step is in each domain's tamper-evident audit log")
    for name, folder in folders.items():
        d = Domain(folder)
        v = d.verify_audit()
        actions = pd.Series([e.action for e in d.audit_entries()]).value_counts().to_dict()
        check(v.ok, f"{name}: {v.entries} entries, chain intact, head {v.head[:16]}...  {actions}")
        d.close()
    fed.close()
    return failures


def _regression(patients, check) -> None:
    """Federated logistic regression across the hospitals, against the model that generated the data."""
    import fednb

    _step("4b. A federated logistic regression: each round, each hospital releases only XᵀWX and XᵀWz")
    formula = "readmitted ~ " + " + ".join(n for n in data.READMISSION_MODEL if n != "Intercept")
    formula = formula.replace("C(sex)[T.M]", "C(sex)")
    fit = fednb.glm(formula, data=patients, family="binomial")
    click.echo(f"   {formula}: {fit.iterations} IRLS iterations, n={fit.nobs} over {len(fit.domains)} hospitals")
    table = pd.DataFrame({"estimate": fit.params, "std err": fit.bse,
                          "true": pd.Series(data.READMISSION_MODEL)}).loc[fit.params.index]
    click.echo(_indent(table.to_string(float_format="{:.4f}".format)))
    for name, row in table.iterrows():
        check(abs(row["estimate"] - row["true"]) <= 3 * row["std err"],
              f"{name}: the true {row['true']:g} lies within 3 standard errors of {row['estimate']:.4f}")


def _learning_step(patients, folders: dict[str, Path], check) -> None:
    _step("5b. Federated learning: a small torch model trained over both hospitals, approved once")
    try:
        import torch

        import fednb.learn as fl
        from fednb.demo.learning import ReadmissionNet, readmission_features, train_readmission
    except ImportError:
        click.echo("   (skipped: install fednb[learn] for federated learning)")
        return
    from fednb.demo.owners import approving

    def show(record: dict) -> None:
        if record["domain"] == "global":
            click.echo(f"   round {record['round']}: loss {record['loss']:.4f}, accuracy {record['accuracy']:.3f} "
                       f"over {record['n']} patients ({record['seconds'] * 1000:.0f} ms)")

    torch.manual_seed(0)
    trainer = fl.Trainer(ReadmissionNet(), train_readmission, data=patients, rounds=5, min_domains=2,
                         helpers=[readmission_features], on_round=show, progress=False,
                         description="readmission risk model, 5 rounds of FedAvg")
    hospitals = {name: folders[name] for name in data.HOSPITALS}
    with approving(hospitals, "train_readmission", "small model, 5 rounds"):  # each owner reviews it once
        _, history = trainer.fit()
    glob = history[history.domain == "global"]
    check(glob["loss"].iloc[-1] < glob["loss"].iloc[0],
          f"the global loss fell from {glob['loss'].iloc[0]:.4f} to {glob['loss'].iloc[-1]:.4f}; only weights left the hospitals")


def _survival(patients, check) -> None:
    """Kaplan–Meier, log-rank and Cox regression of death after discharge, against the generating model."""
    import fednb

    _step("4c. Survival: each hospital releases events and censorings per interval of a time grid, never a date")
    km = patients.kaplan_meier("followup_days", "died", by="smoker", time_grid=[365, 730, 1095, 1460, 1825])
    click.echo(_indent(km.table[["group", "time", "at_risk", "events", "survival", "lower", "upper"]]
                       .to_string(index=False, float_format="{:.3f}".format)))
    test = patients.logrank("followup_days", "died", by="smoker", time_grid=20)
    check(test.p_value < 0.001, f"log-rank test smokers vs non-smokers: chi2 {test.statistic:.1f}, p = {test.p_value:.2g}")
    terms = " + ".join(n.replace("C(sex)[T.M]", "C(sex)") for n in data.SURVIVAL_MODEL)
    fit = fednb.coxph(f"followup_days + died ~ {terms}", data=patients, time_grid=30)
    click.echo(f"   Cox model, Efron ties, {len(fit.grid)} time points, {fit.rounds} rounds:")
    table = pd.DataFrame({"log HR": fit.params, "std err": fit.bse, "HR": fit.hazard_ratios,
                          "true log HR": pd.Series(data.SURVIVAL_MODEL)}).loc[fit.params.index]
    click.echo(_indent(table.to_string(float_format="{:.4f}".format)))
    for name, row in table.iterrows():
        check(abs(row["log HR"] - row["true log HR"]) <= 3 * row["std err"],
              f"{name}: the true log hazard ratio {row['true log HR']:g} lies within 3 standard errors")


def _indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
