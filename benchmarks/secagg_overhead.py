"""Round time with and without secure aggregation on the digits task, 3 and 10 domains.

Each domain holds a label-skewed share of scikit-learn's digits and trains the MLP 64-32-10 for one
local epoch per round; FedAvg combines. With ``secure_aggregation=True`` the keys and sealed shares
are exchanged while the domains train, then each sends its masked update and the analyst unmasks
only the sum (Bonawitz et al. 2017). Prints one JSON line per (domains, mode): median and p90 round
time over the rounds after the first, the time of all rounds (the first keys the coming ones), and the overhead of secure aggregation against the plain
rounds of the same run, plus a check that both end at the same model. Target: <= 10 % for 3 domains.

The domains sign their key messages and check the others' signatures against the peers they pinned
(Bonawitz et al. 2017 §6); the benchmark's domains pin one another first. A second line per domain
count times that signing alone (what one domain spends per round: sign its keys, verify the n − 1
others) against the X25519 key generation and share sealing the same domain already does each round.

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
from fednb.domain.identity import Identity  # noqa: E402
from fednb.domain.release import trusted_peers  # noqa: E402

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
        signing(n)
        with tempfile.TemporaryDirectory(prefix="fednb-secagg-") as tmp, federation(Path(tmp), frames, token) as servers:
            trusted_peers.pin_each_other([Path(tmp) / f"digits-{i}" for i in range(n)])
            fed = fednb.connect([s.url for s in servers], token=token)
            ds = fed.dataset("digits")
            run(ds, 2, False, test, WORKLOADS["E1_B32"])  # warm the domains' workers' imports
            for workload in args.workloads:
                report(ds, n, args.rounds, workload, test)
            fed.close()


def signing(n: int, repeat: int = 50) -> None:
    """Per round and domain: sign one key message and check n − 1, vs. the key exchange's own work."""
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fednb.privacy import masking, shamir

    identities = [Identity(Ed25519PrivateKey.generate()) for _ in range(n)]
    trusted = {d.public_key: trusted_peers.Peer(f"d{i}", "", d.public_key) for i, d in enumerate(identities)}
    threshold = n // 2 + 1
    pairs = [(masking.KeyPair(), masking.KeyPair()) for _ in range(n)]
    sign_s, check_s, exchange_s = [], [], []
    for r in range(repeat):
        sid = f"benchmark-session-{r:06d}"
        start = time.perf_counter()
        keys = {}
        for i, (d, (c, s)) in enumerate(zip(identities, pairs), 1):
            message = trusted_peers.key_message(sid, r, n, threshold, i, c.public, s.public)
            keys[str(i)] = {"c_pk": c.public.hex(), "s_pk": s.public.hex(), "identity": d.public_key.hex(),
                            "signature": d.sign(message).hex()}
        sign_s.append((time.perf_counter() - start) / n)
        start = time.perf_counter()
        trusted_peers.checked_keys(keys, session=sid, round_=r, participants=n, threshold=threshold, own_index=1,
                                   own_identity=identities[0].public_key, own_keys=(pairs[0][0].public, pairs[0][1].public),
                                   trusted=trusted)
        check_s.append(time.perf_counter() - start)
        start = time.perf_counter()  # what domain 1 does anyway: two key pairs, Shamir, n − 1 sealed boxes
        mine = (masking.KeyPair(), masking.KeyPair())
        shares = shamir.split(int.from_bytes(mine[1].secret(), "big"), list(range(1, n + 1)), threshold)
        for j in range(2, n + 1):
            masking.seal(mine[0].agree(pairs[j - 1][0].public), sid.encode(), 1, j, str(shares[j]).encode())
        exchange_s.append(time.perf_counter() - start)
    line = {"benchmark": "secagg_signing", "domains": n, "repeats": repeat,
            "sign_ms": round(1000 * statistics.median(sign_s), 4),
            "verify_peers_ms": round(1000 * statistics.median(check_s), 4),
            "key_exchange_without_signatures_ms": round(1000 * statistics.median(exchange_s), 4)}
    line["signing_per_round_ms"] = round(line["sign_ms"] + line["verify_peers_ms"], 4)
    print(json.dumps(line), flush=True)


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
