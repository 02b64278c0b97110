"""The packed trainer's compiled MLP activation product is the eager one: same outputs and LoRA gradients, only inside
its block, on SiLU gated MLPs only, and eager again (logged once) where torch.compile cannot build."""

import logging

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from hf_mllm_msr.recommendation import compiled_mlp
from hf_mllm_msr.recommendation.compiled_mlp import compiled_gated_activation
from hf_mllm_msr.testing import text as testing


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory):
    return testing.tiny_llama(tmp_path_factory.mktemp("compiled_mlp") / "tiny_llama")


def lora_model(path, **config):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **config)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero: the gradients of A would all be zero
            torch.nn.init.normal_(parameter, std=0.2)
    return model


def logits_and_grads(model, input_ids):
    model.zero_grad()
    logits = model(input_ids=input_ids).logits
    logits.square().mean().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_same_logits_and_lora_gradients_inside_the_block_only(llama_path, caplog):
    model = lora_model(llama_path)
    mlps = [m for m in model.modules() if type(m).__name__ == "LlamaMLP"]
    input_ids = torch.randint(3, 200, (1, 23))
    eager_logits, eager_grads = logits_and_grads(model, input_ids)
    with caplog.at_level(logging.WARNING), compiled_gated_activation(model) as changed:
        assert changed == len(mlps) > 0
        assert all("forward" in vars(m) for m in mlps)
        compiled_logits, compiled_grads = logits_and_grads(model, input_ids)
        # another sequence length, checked against eager below
        other_ids = torch.randint(3, 200, (1, 31))
        other_logits, _ = logits_and_grads(model, other_ids)
    assert not [r for r in caplog.records if "could not build" in r.getMessage()]  # it did run compiled
    assert all("forward" not in vars(m) for m in mlps)  # saving and scoring see the model's own forward again
    torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-5, atol=1e-5)
    assert compiled_grads.keys() == eager_grads.keys()
    for name, grad in eager_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(other_logits, logits_and_grads(model, other_ids)[0], rtol=1e-5, atol=1e-5)


def test_leaves_other_activations_alone(llama_path):
    model = lora_model(llama_path, hidden_act="gelu")
    with compiled_gated_activation(model) as changed:
        assert changed == 0


def test_runs_eager_and_logs_once_where_compile_cannot_build(llama_path, monkeypatch, caplog):
    def cannot_build(gate, up):
        raise torch._dynamo.exc.BackendCompilerFailed(cannot_build, RuntimeError("no C++ compiler"), None)

    monkeypatch.setattr(compiled_mlp, "compiled_silu_product", lambda: cannot_build)
    model = lora_model(llama_path)
    input_ids = torch.randint(3, 200, (1, 19))
    eager_logits, _ = logits_and_grads(model, input_ids)
    with caplog.at_level(logging.WARNING, logger=compiled_mlp.__name__), compiled_gated_activation(model):
        logits, grads = logits_and_grads(model, input_ids)
        logits_and_grads(model, input_ids)
    torch.testing.assert_close(logits, eager_logits)
    assert all(grad.abs().max() > 0 for grad in grads.values())
    said = [r.getMessage() for r in caplog.records if "could not build" in r.getMessage()]
    assert len(said) == 1 and "no C++ compiler" in said[0]
