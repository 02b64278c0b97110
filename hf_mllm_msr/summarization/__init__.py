"""Stages 1 and 2: item summaries and recurrent user summaries.

Takes ``items`` and ``examples`` (:mod:`hf_mllm_msr.data.loading`) and an (M)LLM; a text-only LLM gets each image as words
first (:mod:`.textualize`). Leaves ``item_summaries`` and ``user_summaries`` datasets (``save_to_disk``), keyed by
item id and by history. Run by ``recipes/summarize.py`` and ``pipeline("mllm-msr-summarize")``.
"""
