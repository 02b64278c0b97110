"""LoRA's update, computed with less memory traffic during packed training (same results).

PEFT adds a LoRA update as ``base(x) + lora_B(lora_A(x)) * scaling``: the scaling multiplies, and the sum adds, a
full-width output (a packed user of 2,000 tokens through SmolLM2's 1,536-wide MLP: 12 MB each time, forward and
backward). On 2 CPU cores those passes over memory cost more than their FLOPs suggest.
:func:`scaled_before_up_projection` scales the rank-r activation instead and folds the sum into the up-projection
(``addmm``): the same function of the weights, in less time per packed step (``benchmarks/bench_sft.py`` prints
both; docs/experiments.md, "Speed" under the packed SFT study). It uses PEFT's own extension point for LoRA variants
(``LoraLayer.lora_variant``, through which DoRA runs), for the duration of a ``with`` block only, so that saving,
merging and scoring see plain LoRA.
"""

from __future__ import annotations

import contextlib

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import LoraVariant


class ScaledBeforeUpProjection(LoraVariant):
    """``addmm(base(x), lora_A(x) * scaling, lora_B.T)``: plain LoRA's forward, one pass over the output, not three."""

    @staticmethod
    def forward(module, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs) -> torch.Tensor:
        lora_a, lora_b = module.lora_A[active_adapter], module.lora_B[active_adapter]
        hidden = lora_a(module.lora_dropout[active_adapter](x)) * module.scaling[active_adapter]
        update = torch.addmm(
            result.reshape(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]), lora_b.weight.t()
        )
        return update.view(result.shape)


@contextlib.contextmanager
def scaled_before_up_projection(model):
    """Within the block, every plain LoRA ``Linear`` of ``model`` (no bias on ``lora_B``, no other variant such as
    DoRA) computes its update as :class:`ScaledBeforeUpProjection`. Yields how many layers it changed."""
    variant, changed = ScaledBeforeUpProjection(), []
    for module in model.modules():
        if isinstance(module, LoraLinear):
            for adapter, lora_b in module.lora_B.items():
                if adapter not in module.lora_variant and lora_b.bias is None:
                    module.lora_variant[adapter] = variant
                    changed.append((module, adapter))
    try:
        yield len(changed)
    finally:
        for module, adapter in changed:
            module.lora_variant.pop(adapter, None)
