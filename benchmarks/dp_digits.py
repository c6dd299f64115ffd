"""Accuracy of differentially private federated learning on the digits task.

Three domains hold a label-skewed split of scikit-learn's digits; each trains the MLP 64-32-10 by
DP-SGD under its own accountant (``Trainer(dp=DPSGD(epsilon=...))``) for a target epsilon over the
whole run (Abadi et al. 2016); FedAdam combines (Reddi et al. 2021; post-processing, no privacy
cost). The settings (server eta 0.03, beta_1 0.5; DP-SGD lr 2.0, momentum 0.5, expected batch 128,
clipping norm 1.0, 15 rounds of 1 epoch) were chosen at epsilon 3 on seeds 0 and 1 among nine
(FedAvg or FedAdam, lr 0.5-2, batch 32-128, norm 1-2, 8-15 rounds); the accuracies are reported on
fresh seeds. Prints one JSON line per epsilon and seed (and without DP for reference): held-out
accuracy, the noise multiplier the domains chose, the epsilon each domain debited; then one line
per epsilon with the mean over seeds.

    python benchmarks/dp_digits.py [--rounds 15] [--epsilons 1 3 8] [--seeds 2 3 4] [--secure]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from digits_task import CONFIG, DigitsMLP, accuracy, digits_tensors, federation, label_groups, split, train_digits  # noqa: E402

import fednb  # noqa: E402
import fednb.learn as fl  # noqa: E402
from fednb.domain import Domain  # noqa: E402
from fednb.domain.domain import new_token  # noqa: E402


def run(ds, servers, test, eps: float | None, seed: int, args) -> dict:
    """One training run: DP-SGD at ``eps`` (None: without DP) from ``seed``."""
    torch.manual_seed(seed)
    dp = fl.DPSGD(epsilon=eps, delta=1e-5, batch_size=128, max_grad_norm=1.0, epochs=1, lr=2.0,
                  momentum=0.5) if eps else None
    started = time.perf_counter()
    trainer = fl.Trainer(DigitsMLP(), digits_tensors if dp else train_digits, data=ds, rounds=args.rounds,
                         min_domains=args.domains, dp=dp, strategy=fl.FedAdam(eta=0.03, beta_1=0.5, tau=1e-3),
                         central_eval=lambda model: {"accuracy": accuracy(model, test)}, progress=False,
                         seed=seed, secure_aggregation=args.secure, helpers=[] if dp else [digits_tensors],
                         config={} if dp else dict(CONFIG), round_timeout=300)
    model, history = trainer.fit()
    glob = history[history.domain == "global"]
    line = {"benchmark": "dp_digits", "epsilon": eps, "delta": 1e-5 if eps else None, "seed": seed,
            "domains": args.domains, "rounds": args.rounds, "secure_aggregation": args.secure,
            "accuracy": round(accuracy(model, test), 4),
            "best_round_accuracy": round(float(glob["eval_accuracy"].max()), 4),
            "seconds": round(time.perf_counter() - started, 1)}
    if dp:
        part = trainer.request.parts[0]
        rnd = fednb.client.http.run(part.client.round(part.id, args.rounds))
        line["noise_multiplier"] = round(rnd["dp"]["noise_multiplier"], 4)
        line["sample_rate"] = round(rnd["dp"]["sample_rate"], 4)
        spent = []
        for s, p in zip(servers, trainer.request.parts):
            dom = Domain(s.path)
            spent.append(round(sum(e.payload["epsilon"] for e in dom.audit_entries()
                                   if e.action == "spend" and e.object_id == p.id), 4))
            dom.close()
        line["epsilon_debited_per_domain"] = spent
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--domains", type=int, default=3)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--secure", action="store_true", help="also sum the updates by secure aggregation")
    args = parser.parse_args()
    token = new_token()
    frames, test = split(label_groups(args.domains))
    runs = len(args.seeds)  # each run spends its epsilon and delta=1e-5 from the analyst's budget
    budget = {"epsilon = 3.0": f"epsilon = {runs * sum(args.epsilons) + 1:g}",
              "delta = 1e-6": f"delta = {2e-5 * runs * len(args.epsilons):g}"}
    with tempfile.TemporaryDirectory(prefix="fednb-dp-") as tmp, \
            federation(Path(tmp), frames, token, policy_edits=budget) as servers:
        fed = fednb.connect([s.url for s in servers], token=token)
        ds = fed.dataset("digits")
        means = {}
        for eps in [None, *args.epsilons]:
            for seed in args.seeds:
                line = run(ds, servers, test, eps, seed, args)
                means.setdefault(eps, []).append(line["accuracy"])
                print(json.dumps(line), flush=True)
        for eps, accuracies in means.items():
            print(json.dumps({"benchmark": "dp_digits", "summary": True, "epsilon": eps, "seeds": args.seeds,
                              "mean_accuracy": round(statistics.mean(accuracies), 4),
                              "min_accuracy": min(accuracies), "max_accuracy": max(accuracies)}), flush=True)
        fed.close()


if __name__ == "__main__":
    main()
