"""Model and dataset card templates (Jinja, rendered by `hf_mllm_msr.publishing.cards`); shipped as `hf_mllm_msr.model_cards`."""
