"""The packed trainer's LoRA update (scaled before the up-projection, summed by addmm) is plain LoRA: same outputs and
gradients, only inside its block, and layers it cannot express (DoRA) are left alone."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from hf_mllm_msr.recommendation.fused_lora import scaled_before_up_projection
from hf_mllm_msr.testing import text as testing


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory):
    return testing.tiny_llama(tmp_path_factory.mktemp("fused_lora") / "tiny_llama")


def lora_model(path, **lora):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    # alpha / r = 1.5: a scaling that is not a power of two, so a reordered product would show
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=6, target_modules="all-linear", **lora))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero, which would make any update look right
            torch.nn.init.normal_(parameter, std=0.2)
    return model


def logits_and_grads(model, input_ids):
    model.zero_grad()
    logits = model(input_ids=input_ids).logits
    (logits.square().mean()).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_same_logits_and_lora_gradients_inside_the_block_only(llama_path):
    model = lora_model(llama_path)
    input_ids = torch.randint(3, 200, (2, 17))
    plain_logits, plain_grads = logits_and_grads(model, input_ids)
    lora_linears = [m for m in model.modules() if hasattr(m, "lora_variant")]
    with scaled_before_up_projection(model) as changed:
        assert changed == len(lora_linears) > 0
        assert all("default" in m.lora_variant for m in lora_linears)
        fused_logits, fused_grads = logits_and_grads(model, input_ids)
    assert all(not m.lora_variant for m in lora_linears)  # saving and scoring see plain LoRA again
    torch.testing.assert_close(fused_logits, plain_logits, rtol=1e-5, atol=1e-5)
    assert fused_grads.keys() == plain_grads.keys() and len(plain_grads) == 2 * changed
    for name, grad in plain_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_leaves_other_variants_and_biased_updates_alone(llama_path):
    for lora in ({"use_dora": True}, {"lora_bias": True}):
        model = lora_model(llama_path, **lora)
        before = [dict(m.lora_variant) for m in model.modules() if hasattr(m, "lora_variant")]
        with scaled_before_up_projection(model) as changed:
            assert changed == 0
        assert [dict(m.lora_variant) for m in model.modules() if hasattr(m, "lora_variant")] == before
