"""DP-SGD as the domain's training harness runs it (Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar
& Zhang, "Deep Learning with Differential Privacy", CCS 2016, Algorithm 1).

Each step samples every row with probability q (Poisson sampling, which the accountant assumes),
computes each sampled row's gradient (``torch.func.vmap`` over ``grad``, as Opacus' functorch
mode does), clips it to L2 norm C, sums, adds N(0, (zC)²) per coordinate and divides by the expected
batch size q·N_public (a public number, so the scaling is post-processing). Randomness comes from a
generator seeded by the domain with a secret the analyst never sees. Parameters move by SGD with
optional momentum, both post-processing of the noisy gradients.

Runs inside the sandbox child, where torch is available; it is imported only there.
"""

from __future__ import annotations

from typing import Any

CHUNK = 256  # rows per vmap call: bounds the memory of per-row gradients


def _loss(name: str):
    import torch.nn.functional as F

    return {"cross_entropy": lambda out, y: F.cross_entropy(out, y.long()),
            "bce_with_logits": lambda out, y: F.binary_cross_entropy_with_logits(out, y.float()),
            "mse": lambda out, y: F.mse_loss(out, y.float())}[name]


def _gaussian(torch, std: float, shape, gen):
    """N(0, std²) per coordinate, as the sum of four draws halved.

    The low bits of one floating-point Gaussian sample can reveal the value it was added to
    (Mironov, "On significance of the least significant bits for differential privacy", CCS 2012;
    against DP-SGD: Jin, McMurtry, Rubinstein & Ohrimenko, arXiv:2112.05307). Summing 2n draws of
    N(0, std²/n) gives the same distribution with an attack cost of 2^(p(2n-1)) for p-bit floats
    (Holohan & Braghin, "Secure random sampling in differential privacy", ESORICS 2021, §5.1);
    n = 2, as Opacus' ``secure_mode``.
    """
    total = torch.zeros(shape)
    for _ in range(4):
        total += torch.normal(0.0, std, size=shape, generator=gen)
    return total / 2


def train(model, x, y, *, noise_multiplier: float, max_grad_norm: float, sample_rate: float, steps: int,
          lr: float, momentum: float, loss: str, expected_batch: float, seed: int) -> dict[str, Any]:
    """Run ``steps`` DP-SGD steps on (x, y) in place; returns how many rows the steps sampled in all."""
    import torch
    from torch.func import functional_call, grad, vmap

    if list(model.buffers()):
        raise ValueError("DP training needs a model without buffers (BatchNorm keeps statistics of the data "
                         "outside the noise); use GroupNorm or LayerNorm")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if len(x) != len(y):
        raise ValueError(f"the data function returned {len(x)} inputs but {len(y)} targets")
    gen = torch.Generator().manual_seed(int(seed))
    params = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    loss_fn = _loss(loss)

    def row_loss(p, xi, yi):
        return loss_fn(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_row = vmap(grad(row_loss), in_dims=(None, 0, 0))
    sampled = 0
    for _ in range(int(steps)):
        idx = (torch.rand(len(x), generator=gen) < sample_rate).nonzero().squeeze(1)
        sampled += len(idx)
        total = {k: torch.zeros_like(v) for k, v in params.items()}
        for start in range(0, len(idx), CHUNK):
            part = idx[start:start + CHUNK]
            grads = per_row(params, x[part], y[part])
            norms = torch.sqrt(sum(g.reshape(len(part), -1).pow(2).sum(1) for g in grads.values()))
            scale = (max_grad_norm / (norms + 1e-12)).clamp(max=1.0)
            for k, g in grads.items():
                total[k] += torch.einsum("b,b...->...", scale, g)
        for k in params:
            noise = _gaussian(torch, noise_multiplier * max_grad_norm, total[k].shape, gen)
            step = (total[k] + noise) / expected_batch
            velocity[k] = momentum * velocity[k] + step
            params[k] = params[k] - lr * velocity[k]
    with torch.no_grad():
        for k, v in model.named_parameters():
            if k in params:
                v.copy_(params[k])
    return {"sampled": sampled}
