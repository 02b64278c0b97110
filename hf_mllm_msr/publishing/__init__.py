"""Publishing: model cards, dataset cards and the push to the Hub.

Takes an adapter folder (and ``results.json``, summaries); leaves the card (``README.md``) and Hub repos whose files
name only Hub ids, never this machine's paths. Run by ``mllm-msr push`` and ``recipes/evaluate.py --push_to_hub``.
"""
