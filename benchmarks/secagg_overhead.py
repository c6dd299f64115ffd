"""Round time with and without secure aggregation on the digits task, 3 and 10 domains.

Each domain holds a label-skewed share of scikit-learn's digits and trains the MLP 64-32-10 for one
local epoch per round; FedAvg combines. With ``secure_aggregation=True`` the keys and sealed shares
are exchanged while the domains train, then each sends its masked update and the analyst unmasks
only the sum (Bonawitz et al. 2017). Prints one JSON line per (domains, mode): median and p90 round
time over the rounds after the first, the time of all rounds (the first keys the coming ones), and the overhead of secure aggregation against the plain
rounds of the same run, plus a check that both end at the same model. Target: <= 10 % for 3 domains.

    python benchmarks/secagg_overhead.py [--rounds 12] [--domains 3 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from digits_task import DigitsMLP, accuracy, digits_tensors, federation, label_groups, split, train_digits  # noqa: E402

import fednb  # noqa: E402
import fednb.learn as fl  # noqa: E402
from fednb.domain.domain import new_token  # noqa: E402

WORKLOADS = {  # local training per round: McMahan et al. 2017 vary E in {1, 5, 20}, B in {10, 50}
    "E1_B32": {"epochs": 1, "batch_size": 32, "lr": 0.05},  # the federated-learning benchmark's own
    "E5_B10": {"epochs": 5, "batch_size": 10, "lr": 0.02},
}


def run(ds, rounds: int, secure: bool, test, config: dict) -> tuple[list[float], dict, float]:
    torch.manual_seed(0)
    trainer = fl.Trainer(DigitsMLP(), train_digits, data=ds, rounds=rounds, min_domains=len(ds.domains), progress=False,
                         secure_aggregation=secure, helpers=[digits_tensors], config=config, round_timeout=300)
    model, history = trainer.fit()
    seconds = history[history.domain == "global"]["seconds"].tolist()
    return seconds, {k: v.detach().numpy() for k, v in model.state_dict().items()}, accuracy(model, test)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--domains", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    args = parser.parse_args()
    token = new_token()
    for n in args.domains:
        frames, test = split(label_groups(n))
        with tempfile.TemporaryDirectory(prefix="fednb-secagg-") as tmp, federation(Path(tmp), frames, token) as servers:
            fed = fednb.connect([s.url for s in servers], token=token)
            ds = fed.dataset("digits")
            run(ds, 2, False, test, WORKLOADS["E1_B32"])  # warm the domains' workers' imports
            for workload in args.workloads:
                report(ds, n, args.rounds, workload, test)
            fed.close()


def report(ds, n: int, rounds: int, workload: str, test) -> None:
    results: dict[bool, list] = {}
    for secure in (False, True, False, True):  # interleaved, so drift hits both alike
        results.setdefault(secure, []).append(run(ds, rounds, secure, test, WORKLOADS[workload]))
    plain = [t for times, _, _ in results[False] for t in times[1:]]
    masked = [t for times, _, _ in results[True] for t in times[1:]]
    whole = {secure: statistics.mean(sum(times) for times, _, _ in results[secure]) for secure in results}
    gap = max(float(np.abs(results[True][0][1][k] - results[False][0][1][k]).max()) for k in results[False][0][1])
    for secure, times in ((False, plain), (True, masked)):
        line = {"benchmark": "secagg_overhead", "domains": n, "local_training": workload,
                "secure_aggregation": secure, "rounds": len(times),
                "median_round_s": round(statistics.median(times), 4),
                "p90_round_s": round(float(np.percentile(times, 90)), 4),
                "all_rounds_s": round(whole[secure], 4),
                "accuracy": round(results[secure][-1][2], 4)}
        if secure:
            line["overhead_median"] = round(statistics.median(masked) / statistics.median(plain) - 1, 4)
            line["added_median_s"] = round(statistics.median(masked) - statistics.median(plain), 4)
            line["overhead_all_rounds"] = round(whole[True] / whole[False] - 1, 4)  # the first round's keying too
            line["max_weight_difference_vs_plain"] = gap
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
