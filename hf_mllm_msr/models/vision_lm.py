"""A small LLaVA-style image-text-to-text model: frozen CNN -> grid pooling -> MLP projector -> causal LM.

The image pathway: a frozen vision encoder (the ImageNet-trained EfficientNet-Lite0, or a tiny random CNN
for tests) gives a (C, h, w) feature map; adaptive average pooling keeps ``image_grid x image_grid`` cells;
with ``colour_bins``, each cell also gets the colour histogram of its pixels (an ImageNet CNN's deep features are
close to colour-blind); a 2-layer MLP maps each cell to one LM input embedding. The processor expands one
``<image>`` placeholder into ``image_grid**2`` image tokens whose embeddings the model replaces by the projected
cells.

With ``projector_output="word_mixture"`` the MLP's output scores every word of the LM's vocabulary and the image
token is the softmax mixture of those words' input embeddings: the image is read into the LM's own word space,
as SPAE (Yu et al., NeurIPS 2023) maps images onto an LLM's lexical tokens. A LM that learned to match a word in
its prompt with the same word elsewhere can then match an image token the same way.

Importing this module registers the classes with ``AutoConfig``, ``AutoModelForImageTextToText`` and
``AutoProcessor`` (``import hf_mllm_msr`` does it), so pipelines, TRL and PEFT load it like any VLM.
The module imports only torch and transformers, so it can also travel with a checkpoint as remote code.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
)
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep

MODEL_TYPE = "mllm_msr_vision"
IMAGE_TOKEN = "<image>"
EFFICIENTNET = "efficientnet-lite0"
TINY_CNN = "tiny-cnn"
PROJECTOR_OUTPUTS = ("embedding", "word_mixture")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class MsrVisionConfig(PreTrainedConfig):
    r"""Configuration of [`MsrVisionForConditionalGeneration`].

    Args:
        text_config (`dict` or `PreTrainedConfig`): config of any causal LM (`AutoModelForCausalLM`).
        vision_encoder (`str`): `"efficientnet-lite0"` (needs the `efficientnet-lite-pytorch` code package; the
            weights live in this model's safetensors) or `"tiny-cnn"` (two random conv layers, for tests).
        vision_channels (`int`): channels of the encoder's feature map (1280 for EfficientNet-Lite0).
        image_size (`int`): side in pixels of the square encoder input (224 for EfficientNet-Lite0).
        image_grid (`int`): the feature map is pooled to `image_grid x image_grid` cells = image tokens per image.
        image_token_id (`int`): id of the `<image>` placeholder token in the LM vocabulary.
        projector_hidden_size (`int`): hidden width of the 2-layer MLP projector.
        colour_bins (`int`): bins per RGB channel of a colour histogram of each cell's pixels, appended to the
            encoder's features (`colour_bins**3` values per cell); 0: none. A linear probe of EfficientNet-Lite0's
            pooled cells names the colour of ~60 % of held-out object cells of the synthetic items, a 4-bin
            histogram 99 % (`experiments/probe_vision_colours.py`).
        pixel_mean, pixel_std (`list[float]`): the image processor's normalization, undone for the histogram.
        projector_output (`str`): `"embedding"`: the projector's output is the image token's embedding;
            `"word_mixture"`: it scores the LM's words and the image token is the softmax mixture of their input
            embeddings (the LM reads an image as soft words).
    """

    model_type = MODEL_TYPE
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    vision_encoder: str = TINY_CNN
    vision_channels: int = 1280
    image_size: int = 224
    image_grid: int = 3
    image_token_id: int = 0
    projector_hidden_size: int = 1024
    colour_bins: int = 0
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None
    projector_output: str = "embedding"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # The LM head is tied to the input embeddings exactly when the wrapped LM ties them (SmolLM2 does).
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        if self.vision_encoder not in (EFFICIENTNET, TINY_CNN):
            raise ValueError(f"vision_encoder={self.vision_encoder!r}; use {EFFICIENTNET!r} or {TINY_CNN!r}.")
        if self.vision_encoder == EFFICIENTNET and self.vision_channels != 1280:
            raise ValueError(
                f"EfficientNet-Lite0 has 1280 feature channels, not vision_channels={self.vision_channels}."
            )
        self.pixel_mean = list(self.pixel_mean or IMAGENET_MEAN)
        self.pixel_std = list(self.pixel_std or IMAGENET_STD)
        if self.projector_output not in PROJECTOR_OUTPUTS:
            raise ValueError(f"projector_output={self.projector_output!r}; use one of {PROJECTOR_OUTPUTS}.")

    @property
    def image_seq_length(self) -> int:
        """Image tokens per image."""
        return self.image_grid * self.image_grid

    @property
    def cell_channels(self) -> int:
        """Values per image cell that the projector reads: encoder channels + colour histogram."""
        return self.vision_channels + self.colour_bins**3


class TinyCnnEncoder(nn.Module):
    """Two strided convolutions: a stand-in vision encoder for fast tests (same interface as EfficientNet)."""

    def __init__(self, channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, channels, 3, stride=2, padding=1)
        )

    def extract_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.layers(pixel_values)


def build_vision_encoder(config: MsrVisionConfig) -> nn.Module:
    """The encoder architecture only (its weights come from the checkpoint)."""
    if config.vision_encoder == TINY_CNN:
        return TinyCnnEncoder(config.vision_channels)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError(
            "This model's vision encoder is EfficientNet-Lite0, whose architecture code comes from the "
            "`efficientnet-lite-pytorch` package (the weights are in the checkpoint): "
            "`pip install --no-deps efficientnet-lite-pytorch`."
        ) from err
    # Keep the 1000-way classifier: the alignment step reads its ImageNet labels.
    return EfficientNet.from_name(EFFICIENTNET, num_classes=1000)


class MsrVisionProjector(nn.Module):
    """LayerNorm + 2-layer MLP from encoder channels to LM embeddings (the norm tames the CNN's feature scale)."""

    def __init__(self, in_channels: int, hidden_size: int, out_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_channels)
        self.linear_1 = nn.Linear(in_channels, hidden_size)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(hidden_size, out_size)

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(self.norm(cells))))


class MsrVisionPreTrainedModel(PreTrainedModel):
    config_class = MsrVisionConfig
    config: MsrVisionConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        model = super().from_pretrained(*args, **kwargs)
        for module in model.modules():  # loading replaces the parameters and so resets requires_grad
            if isinstance(module, MsrVisionModel):
                module.vision_tower.requires_grad_(False)
        return model


class MsrVisionModel(MsrVisionPreTrainedModel):
    """Frozen vision encoder -> pooled grid -> projector -> the LM backbone (no head), image embeddings
    spliced in at the `<image>` positions. Returns the backbone's outputs (`last_hidden_state`, `cache`)."""

    def __init__(self, config: MsrVisionConfig):
        super().__init__(config)
        self.vision_tower = build_vision_encoder(config)
        self.vision_tower.requires_grad_(False)
        self.multi_modal_projector = MsrVisionProjector(
            config.cell_channels, config.projector_hidden_size, config.text_config.hidden_size
        )
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def train(self, mode: bool = True):
        super().train(mode)
        # The encoder is frozen: BatchNorm keeps its ImageNet statistics and drop-connect stays off.
        self.vision_tower.eval()
        return self

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def colour_histogram(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Share of each cell's pixels in each of `colour_bins**3` RGB bins, times `colour_bins**1.5`, (num_images,
        image_grid**2, bins**3). The factor gives a one-colour cell the per-value spread of the encoder features (a
        bare share spreads ~7x less at 4 bins), so the projector's LayerNorm does not drown it."""
        bins = self.config.colour_bins
        mean = torch.tensor(self.config.pixel_mean, device=pixel_values.device)[:, None, None]
        std = torch.tensor(self.config.pixel_std, device=pixel_values.device)[:, None, None]
        levels = ((pixel_values.float() * std + mean).clamp(0, 1) * bins).long().clamp(max=bins - 1)
        index = (levels[:, 0] * bins + levels[:, 1]) * bins + levels[:, 2]
        one_hot = nn.functional.one_hot(index, bins**3).permute(0, 3, 1, 2).float()
        shares = nn.functional.adaptive_avg_pool2d(one_hot, self.config.image_grid).flatten(2).transpose(1, 2)
        return shares * bins**1.5

    def encode_images(self, pixel_values: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled encoder cells (+ their colour histograms), (num_images, image_grid**2, cell_channels); no
        gradient (the encoder is frozen). `features`: the encoder's feature map of these images, when the caller
        already has it."""
        with torch.no_grad():
            if features is None:
                dtype = next(self.vision_tower.parameters()).dtype
                features = self.vision_tower.extract_features(pixel_values.to(dtype))
            cells = nn.functional.adaptive_avg_pool2d(features, self.config.image_grid).flatten(2).transpose(1, 2)
            if self.config.colour_bins:
                cells = torch.cat([cells, self.colour_histogram(pixel_values).to(cells.dtype)], dim=-1)
        return cells

    def image_word_logits(self, projected: torch.Tensor) -> torch.Tensor:
        """Scores of every vocabulary word for projector outputs (..., hidden) -> (..., vocab); the image
        placeholder itself is never a candidate word. Scaled by 1/sqrt(hidden) so a fresh projector starts near a
        uniform mixture."""
        words = self.get_input_embeddings().weight
        logits = projected @ words.T.to(projected.dtype) / projected.shape[-1] ** 0.5
        return logits.index_fill(-1, torch.tensor([self.config.image_token_id], device=logits.device), -torch.inf)

    def project_cells(self, cells: torch.Tensor) -> torch.Tensor:
        """Encoder cells (..., cell_channels) -> image token embeddings (..., text hidden size)."""
        projected = self.multi_modal_projector(cells.to(self.multi_modal_projector.linear_1.weight.dtype))
        if self.config.projector_output == "embedding":
            return projected
        weights = torch.softmax(self.image_word_logits(projected), dim=-1)
        return weights @ self.get_input_embeddings().weight.to(weights.dtype)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image token embeddings, (num_images, image_grid**2, text hidden size)."""
        return self.project_cells(self.encode_images(pixel_values))

    def merge_image_embeddings(self, input_ids, inputs_embeds, image_embeds) -> torch.Tensor:
        """Writes `image_embeds` (num_images, tokens, hidden) over the `<image>` positions of `inputs_embeds`."""
        mask = input_ids == self.config.image_token_id
        n_slots, n_features = int(mask.sum()), image_embeds.shape[0] * image_embeds.shape[1]
        if n_slots != n_features:
            raise ValueError(
                f"The text holds {n_slots} image tokens but {image_embeds.shape[0]} images give {n_features} "
                f"({self.config.image_seq_length} per image). Build inputs with this model's processor, which expands "
                f"each '{IMAGE_TOKEN}' into {self.config.image_seq_length} tokens, and pass one image per placeholder."
            )
        mask = mask.unsqueeze(-1).expand_as(inputs_embeds)
        return inputs_embeds.masked_scatter(mask, image_embeds.to(inputs_embeds.dtype))

    def forward(
        self,
        input_ids=None,
        pixel_values=None,
        attention_mask=None,
        position_ids=None,
        cache=None,
        past_key_values=None,
        inputs_embeds=None,
        **kwargs,
    ):
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is not None:
            if input_ids is None:
                raise ValueError("pixel_values need input_ids to locate the image tokens.")
            inputs_embeds = self.merge_image_embeddings(
                input_ids, inputs_embeds, self.get_image_features(pixel_values)
            )
        for unused in ("token_type_ids", "mm_token_type_ids", "image_sizes"):
            kwargs.pop(unused, None)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            **kwargs,
        )


class MsrVisionForConditionalGeneration(MsrVisionPreTrainedModel, GenerationMixin):
    """[`MsrVisionModel`] + the LM head: an image-text-to-text model. LoRA targets the LM with a regex on
    `language_model`; the projector is trained through `modules_to_save=["multi_modal_projector"]`."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: MsrVisionConfig):
        super().__init__(config)
        self.model = MsrVisionModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    vision_tower = property(lambda self: self.model.vision_tower)
    multi_modal_projector = property(lambda self: self.model.multi_modal_projector)
    language_model = property(lambda self: self.model.language_model)

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(num_images, 3, image_size, image_size)`, *optional*):
                one image per `<image>` placeholder, in text order; generation passes them on the first step only.
            past_key_values: accepted as an alias of `cache` (the transformers 4 name).
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class MsrVisionProcessor(ProcessorMixin):
    r"""Tokenizer + image processor; expands each `<image>` into `image_seq_length` image tokens.

    Args:
        image_processor: resizes/crops/normalizes images (`CLIPImageProcessorPil` with ImageNet statistics).
        tokenizer: the LM's tokenizer, with `<image>` as a special token.
        image_seq_length (`int`): image tokens per image (`config.image_grid**2`).
        chat_template (`str`): renders `{"type": "image"}` content items as `<image>`.
        image_token (`str`): the placeholder (the tokenizer's `image_token` when it defines one).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        image_seq_length: int = 9,
        chat_template=None,
        image_token: str = IMAGE_TOKEN,
        **kwargs,
    ):
        self.image_seq_length = image_seq_length
        self.image_token = getattr(tokenizer, "image_token", None) or image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        return self.image_token * self.image_seq_length

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def imagenet_image_processor(image_size: int = 224):
    """ImageNet evaluation preprocessing: short side to 256/224 * size, centre crop, ImageNet mean/std."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": round(image_size * 256 / 224)},
        crop_size={"height": image_size, "width": image_size},
        resample=2,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        do_convert_rgb=True,
    )


AutoConfig.register(MODEL_TYPE, MsrVisionConfig, exist_ok=True)
AutoModelForImageTextToText.register(MsrVisionConfig, MsrVisionForConditionalGeneration, exist_ok=True)
AutoProcessor.register(MsrVisionConfig, MsrVisionProcessor, exist_ok=True)
# Saved folders carry this file and an `auto_map`, so users without hf_mllm_msr load them with trust_remote_code.
MsrVisionConfig.register_for_auto_class()
MsrVisionForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
MsrVisionProcessor.register_for_auto_class()
