"""The "training" harness: one kept-alive worker trains the analyst's torch model round after round.

The analyst's source defines a ``torch.nn.Module`` class (``args["model"]``, built with
``args["model_args"]``), a training function ``entry(model, df, **config) -> dict`` of metrics, and
optionally an evaluation function (``args["evaluate"]``) run on the incoming global model first.
Each call brings the global weights as safetensors bytes and the round's inputs (round number and
config) as JSON; it returns the trained weights as safetensors bytes, the sample count and the
metrics. Weights never travel as pickle.
"""

from __future__ import annotations

from fednb.codec import EncodeError, encode
from fednb.domain.run.sandbox.harness import CODE_NAME, Harness, Reply, describe, failure, register
from fednb.domain.run.sandbox.harness_data import load_dataset


@register
class TrainingHarness(Harness):
    name = "training"

    def prepare(self) -> None:
        self.df = load_dataset(self.spec["data_path"], self.spec["data_format"], self.spec.get("columns"))
        self.model = None

    def start(self) -> Reply | None:
        import numpy as np
        import pandas as pd

        try:
            import torch
            from torch import nn
        except ImportError:
            return Reply("error", message="torch is not installed on this domain (install fednb[learn])")
        torch.set_num_threads(1)
        args = self.spec.get("args") or {}
        ns = {"__name__": "analysis", "__builtins__": __builtins__, "np": np, "pd": pd, "torch": torch, "nn": nn}
        try:
            exec(compile(self.spec["code"], CODE_NAME, "exec"), ns)
            self.train = ns[self.spec["entry"]]
            self.evaluate = ns[args["evaluate"]] if args.get("evaluate") else None
            torch.manual_seed(int(args.get("seed", 0)))
            self.model = ns[args["model"]](**(args.get("model_args") or {}))
        except KeyError as e:
            return Reply("error", message=f"NameError: your code defines no {e.args[0]!r}")
        except BaseException as e:  # analyst code: anything may be raised
            return failure(e)
        if not isinstance(self.model, nn.Module):
            return Reply("error", message=f"TypeError: {args['model']} is not a torch.nn.Module")
        return None

    def call(self, inputs: dict | None, blob: bytes | None) -> Reply:
        import time

        import torch
        from safetensors.torch import load as load_weights
        from safetensors.torch import save as save_weights

        inputs = inputs or {}
        config = {**((self.spec.get("args") or {}).get("config") or {}), **(inputs.get("config") or {})}
        config["round"] = int(inputs.get("round", 0))
        try:
            if blob is not None:
                state = load_weights(blob)
                missing = set(self.model.state_dict()) ^ set(state)
                if missing:
                    return Reply("error", message=f"the global weights do not fit the model: {sorted(missing)[:5]}")
                self.model.load_state_dict(state)
            if config.get("proximal_mu"):
                config["global_params"] = [p.detach().clone() for p in self.model.parameters()]
            torch.manual_seed(int(config.get("seed", 0)) * 100_003 + config["round"])
            if self.t_call is None:
                self.t_call = time.monotonic()
            if inputs.get("dp"):  # trusted settings from the domain: fednb's DP-SGD, not the analyst's loop
                return self._dp_round(inputs["dp"], config, save_weights)
            evaluation = None
            if self.evaluate is not None:
                self.model.eval()
                with torch.no_grad():
                    evaluation = self.evaluate(self.model, self.df, **_public(config))
            self.model.train()
            t0 = time.perf_counter()
            metrics = self.train(self.model, self.df, **config) or {}
            seconds = time.perf_counter() - t0
            if not isinstance(metrics, dict):
                return Reply("error", message="TypeError: the training function must return a dict of metrics")
            n = int(metrics.pop("n", len(self.df)))
            weights = save_weights({k: v.detach().contiguous().clone() for k, v in self.model.state_dict().items()})
            value = {"n": n, "metrics": encode(metrics), "eval": encode(evaluation) if evaluation is not None else None,
                     "train_seconds": seconds}
        except EncodeError as e:
            return Reply("error", message=describe(e))
        except BaseException as e:  # analyst code: anything may be raised
            return failure(e)
        return Reply("ok", {"value": value, "t_call": self.t_call}, blob=weights)


    def _dp_round(self, dp: dict, config: dict, save_weights) -> Reply:
        """One round of DP-SGD (:mod:`fednb.privacy.dpsgd`); the entry function only turns the frame
        into (inputs, targets) tensors. No metrics: the domain releases the weights alone."""
        from fednb.privacy.dpsgd import train

        try:
            data = self.train(self.df, **_public(config))
            if not (isinstance(data, tuple) and len(data) == 2):
                return Reply("error", message="TypeError: with DP training, your function returns (inputs, targets)")
            self.model.train()
            train(self.model, *data, **dp)
            weights = save_weights({k: v.detach().contiguous().clone() for k, v in self.model.state_dict().items()})
        except BaseException as e:  # analyst code: anything may be raised
            return failure(e)
        return Reply("ok", {"value": {"n": len(self.df), "metrics": {}, "eval": None}, "t_call": self.t_call},
                     blob=weights)


def _public(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "global_params"}
