"""One `main` per stage of the method, each served two ways (as TRL's `trl/scripts/*.py`): as the file
`recipes/<stage>.py` (so `accelerate launch recipes/sft.py --config ...` works) and as `mllm-msr <stage>`.

Each module has `make_parser()` (a `TrlParser` over the stage's dataclasses, so every flag is also a YAML key of
`--config`) and `main(*dataclasses)`; `hf_mllm_msr.cli.run_stage` joins the two. Heavy imports happen inside
`main()` so that `--help` is instant.
"""

STAGES = {
    "summarize": "stages 1-2: item summaries, then recurrent user summaries",
    "sft": "stage 3: LoRA SFT of the Yes/No recommender (TRL)",
    "evaluate": "adapters and baselines on the same test candidates: results.json, report.md, plots",
    "align": "build the CPU vision-language model and align its projector on item images",
    "demo": "the stages above chained over one YAML (recipes/demo/config.yaml)",
    "push": "upload an adapter folder (+ card, + summaries) to the Hub",
}
