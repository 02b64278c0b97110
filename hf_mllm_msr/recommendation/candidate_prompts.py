"""The recommender's prompt for one user and one candidate, and the tokens its Yes/No answer starts with (stage 3).

Training rows (:mod:`.examples`, :mod:`.packed_trainer`) and scoring (:mod:`.scoring`) render exactly these prompts,
so a candidate is shown the same way in both. Like :mod:`.scoring`, this module imports nothing of the package but
:mod:`hf_mllm_msr.prompts` and :mod:`.msr_config`: a saved recommender pipeline carries it as remote code.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..prompts import ANSWER_NO, ANSWER_YES, CUE_COLOURS_LABEL, cue_colours, recommend_messages

# MODES and CANDIDATE_TEXTS are named in msr_config; examples.py and the experiments import them from here, as before.
from .msr_config import CANDIDATE_TEXTS, DEFAULT_CANDIDATE_TEXT, MODES, check_choice  # noqa: F401

# --- Prompts ---------------------------------------------------------------------------------------


def candidate_text_fields(candidate: dict, candidate_text: str = DEFAULT_CANDIDATE_TEXT) -> dict:
    """The candidate with only the item-summary fields that ``candidate_text`` shows (a new dict)."""
    check_choice("candidate_text", candidate_text)
    if candidate_text == "summary":
        return {**candidate, "visual_cues": None}
    if candidate_text == "cues":
        return {**candidate, "summary": None}
    if candidate_text == "colours":
        colours = cue_colours(candidate.get("visual_cues"))
        return {
            **candidate,
            "summary": None,
            "visual_cues": CUE_COLOURS_LABEL + ", ".join(colours) if colours else None,
        }
    return candidate


def item_summary_text(summary: str | None, visual_cues: str | None = None) -> str:
    """What a text-only model learns about a candidate: its summary plus the textualized visual cues."""
    summary, visual_cues = (summary or "").strip(), (visual_cues or "").strip()
    if visual_cues and visual_cues not in summary:
        return f"{summary} Visual cues: {visual_cues}".strip()
    return summary


def fit_user_summary(user_summary: str, tokenizer=None, max_tokens: int | None = None) -> str:
    """Shortens an over-long user summary from its start (the oldest history), keeping the last ``max_tokens``.

    The user side is the only part that is ever cut: image tokens, candidate and answer stay whole.
    """
    if tokenizer is None or not max_tokens:
        return user_summary
    ids = tokenizer(user_summary, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return user_summary
    return "..." + tokenizer.decode(ids[-max_tokens:], skip_special_tokens=True).lstrip()


def recommend_prompt(
    mode: str,
    user_summary: str,
    candidate: dict,
    item_token: str = "",
    num_history_items: int = 0,
    user_token: str = "",
) -> list[dict]:
    """The user turn for one candidate. Text modes use string content (every text chat template reads it);
    image mode uses content parts with the image placeholder between the user part and the candidate.
    ``item_token``: the collaborative placeholder, once per history item (``num_history_items``) and after the
    candidate's title; empty for a model without collaborative tokens. ``user_token``: the collaborative user
    placeholder, right after the history's item tokens (the user embedding is computed from them). Every mode shows
    the candidate's catalogue ``text`` when it has one (a recommender trained with ``item_text``); mode summary then
    adds the item summary fields after it."""
    check_choice("mode", mode)
    item_text = (candidate.get("text") or "").strip()
    if mode == "summary":
        item_text = " ".join(
            part
            for part in (item_text, item_summary_text(candidate.get("summary"), candidate.get("visual_cues")))
            if part
        )
    messages = recommend_messages(
        user_summary,
        candidate["title"],
        item_text,
        with_image=mode == "image",
        history_item_tokens=item_token * num_history_items + user_token,
        candidate_item_token=item_token,
    )
    if mode != "image":
        messages[0]["content"] = messages[0]["content"][0]["text"]
    return messages


# --- Yes/No answer tokens -------------------------------------------------------------------------


def answer_token_ids(processing_class, mode: str = "summary") -> tuple[int, int]:
    """The token ids the model emits first when it answers "Yes" / "No" (as TRL tokenizes the training rows).

    Renders a prompt with the generation prompt and the same conversation with the answer, tokenizes
    both, and takes the first token where they differ, so leading-space variants (``Yes`` vs ``ĠYes``)
    and templates that add text before the answer are handled.
    """
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    template_owner = processing_class if getattr(processing_class, "chat_template", None) else tokenizer
    prompt = recommend_prompt(mode, "likes red lamps", {"title": "a red lamp", "summary": "a lamp"})
    rendered = template_owner.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    found = []
    for answer in (ANSWER_YES, ANSWER_NO):
        full = template_owner.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=False)
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        start = next((i for i, (a, b) in enumerate(zip(prompt_ids, full_ids)) if a != b), len(prompt_ids))
        if start >= len(full_ids):
            raise ValueError(f"The chat template renders no tokens for the answer {answer!r}.")
        found.append(full_ids[start])
    yes_id, no_id = found
    tokens = tokenizer.convert_ids_to_tokens([yes_id, no_id])
    if yes_id == no_id or not all(answer[0] in t.lstrip("Ġ▁ ") for t, answer in zip(tokens, ("Yes", "No"))):
        raise ValueError(
            f"This tokenizer's first answer tokens are {tokens} for 'Yes'/'No': they must be two distinct tokens "
            "that start the words. Use a base model whose tokenizer encodes 'Yes' and 'No' as (leading) tokens."
        )
    return yes_id, no_id


def render_prompts(
    processing_class,
    mode: str,
    user_summary: str,
    candidates: Sequence[dict],
    item_token: str = "",
    num_history_items: int = 0,
    user_token: str = "",
) -> list[str]:
    """One user's candidate prompts rendered with the chat template and the generation prompt (training and scoring
    tokenize exactly these texts, without adding special tokens). ``item_token``, ``num_history_items``: the
    collaborative placeholders, ``user_token`` the user's (:func:`recommend_prompt`)."""
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    template_owner = processing_class if getattr(processing_class, "chat_template", None) else tokenizer
    return [
        template_owner.apply_chat_template(
            recommend_prompt(mode, user_summary, c, item_token, num_history_items, user_token),
            add_generation_prompt=True,
            tokenize=False,
        )
        for c in candidates
    ]
