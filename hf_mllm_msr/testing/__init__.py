"""Tiny random-weight models of the real architectures, built in-process with no download (the tests, the
benchmarks' smoke modes and the ``--tiny`` demo): :mod:`.text` (Llama, tokenizers, images), :mod:`.vlm` (Gemma3,
LLaVA, Idefics3, Qwen2-VL, MsrVision).
"""
