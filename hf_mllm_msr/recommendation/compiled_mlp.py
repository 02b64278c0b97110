"""The gated MLP's ``silu(gate) * up``, compiled into one pass forward and one backward, during packed training.

Eager PyTorch runs a SwiGLU MLP's activation product as separate passes over 1,536-wide activations: SiLU and the
product forward, two products and ``silu_backward`` backward. In a profiled packed SmolLM2 step (2,000 tokens, 30
layers, 2 CPU cores) those passes took a fifth of the step, ten times what the same operations take alone on warm
data, while the matrix products ran near the cores' peak. ``torch.compile`` fuses each direction into one
loop over the data: 7-17 % less time per packed step with SmolLM2-length summaries in two runs, nothing measurable
with one-sentence ones (``benchmarks/bench_sft.py`` prints both; docs/experiments.md, "Speed" under the packed SFT
study). Only the product is compiled, with dynamic shapes, so that it costs seconds, not the minutes a whole decoder layer takes; where ``torch.compile``
cannot build (no C++ compiler), the block logs it once and runs eager.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import types

import torch
from torch import nn
from transformers.activations import SiLUActivation

logger = logging.getLogger(__name__)

# The attributes, in order, that the standard gated MLP forward reads (Llama, Qwen2, Mistral, Gemma3, ...):
# ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``. A forward that reads anything else is left alone.
GATED_MLP_NAMES = ("down_proj", "act_fn", "gate_proj", "up_proj")


def silu_product(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return nn.functional.silu(gate) * up


@functools.cache
def compiled_silu_product():
    # built on first use: importing torch.compile's machinery costs seconds that scoring and the CLI need not pay
    return torch.compile(silu_product, dynamic=True)


def is_silu_gated_mlp(module: nn.Module) -> bool:
    forward = getattr(type(module), "forward", None)
    return (
        getattr(forward, "__code__", None) is not None
        and forward.__code__.co_names == GATED_MLP_NAMES
        and isinstance(getattr(module, "act_fn", None), (nn.SiLU, SiLUActivation))
    )


@contextlib.contextmanager
def compiled_gated_activation(model):
    """Within the block, every SiLU gated MLP of ``model`` computes ``silu(gate) * up`` with one compiled kernel per
    direction (same results up to float rounding). Yields how many MLPs it changed."""
    state = {"compiled": True}

    def product(gate, up):
        if state["compiled"]:
            try:
                return compiled_silu_product()(gate, up)
            except torch._dynamo.exc.TorchDynamoException as error:
                state["compiled"] = False
                cause = getattr(error, "inner_exception", None) or error  # what the backend itself raised
                logger.warning(
                    "torch.compile could not build the MLP's activation product, so it runs eager (same results, "
                    "slower; on CPU torch.compile needs a C++ compiler such as g++): %s: %s",
                    type(cause).__name__,
                    (str(cause).strip().splitlines() or [""])[0],
                )
        return silu_product(gate, up)

    def forward(self, x):
        return self.down_proj(product(self.gate_proj(x), self.up_proj(x)))

    changed = [module for module in model.modules() if is_silu_gated_mlp(module)]
    for module in changed:
        module.forward = types.MethodType(forward, module)
    try:
        yield len(changed)
    finally:
        for module in changed:
            del module.forward
