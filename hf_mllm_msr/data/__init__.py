"""Stage 0, the data: one schema for every source.

Takes raw files (a builder of ``dataset_builders/``) and leaves three Hugging Face datasets in the cache: ``items``
(id, title, text, image), ``sequences`` (each user's interactions in time order) and ``examples`` (train /
validation / test rows: history, candidate, label; 1 positive + N stored negatives per user). Run it with
``hf_mllm_msr.load_msr_dataset(name, config, **protocol)``; every recipe does.
"""
