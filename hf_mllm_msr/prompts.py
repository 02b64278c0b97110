"""Every prompt of the method, in one place and versioned.

Prompts know no I/O and no models: they turn item/user fields into chat ``messages`` (the format
every processor's ``apply_chat_template`` reads). They carry two versions: bump the one of the stage whose template
changes. :data:`SUMMARY_PROMPT_VERSION` is part of every generation cache key, so old summaries are never reused for a
new prompt; :data:`RECOMMEND_PROMPT_VERSION` is written into every adapter's ``msr_config.json``, and loading an
adapter trained on other recommender prompts warns. Two, so that a recommender prompt change does not throw away
hours of cached summaries whose prompts did not change.

Item fields are untrusted (titles scraped from the web). :func:`clean_field` strips chat-template
control tokens and caps the length, and every field is fenced in quotes so that an instruction
inside a title ("ignore the above") reads as data, not as part of the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SUMMARY_PROMPT_VERSION = "msr-prompts-v3"
RECOMMEND_PROMPT_VERSION = "msr-prompts-v4"

# The paper constrains every user summary to start with this sentence stem; it is also the
# generation prefix we append after the assistant tag, so the model can only continue it.
USER_SUMMARY_PREFIX = "The user appears to have a preference for"

# Answer words of the recommender; the scorer looks their first token up in the tokenizer.
ANSWER_YES = "Yes"
ANSWER_NO = "No"

# Control tokens of the common chat templates (ChatML, Llama-2/3, Gemma, Mistral, Idefics, Phi).
# Any <|...|> token is covered by the first pattern.
_CONTROL_TOKEN_PATTERNS = [
    r"<\|[^<>|]{0,40}\|>",
    r"\[/?INST\]",
    r"<</?SYS>>",
    r"</?s>",
    r"<(?:start|end)_of_(?:turn|image)>",
    r"<image_soft_token>",
    r"<image>",
    r"<end_of_utterance>",
    r"<fake_token_around_image>",
    r"<global-img>",
    r"<row_\d+_col_\d+>",
    r"<(?:bos|eos|pad|unk)>",
]
_CONTROL_TOKENS = re.compile("|".join(_CONTROL_TOKEN_PATTERNS), flags=re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")

DEFAULT_MAX_FIELD_CHARS = 600


def clean_field(text: str | None, max_chars: int = DEFAULT_MAX_FIELD_CHARS, extra_tokens: Sequence[str] = ()) -> str:
    """Makes an untrusted text field safe to place inside a prompt.

    Removes chat-template control tokens (the common families plus ``extra_tokens``, e.g. the
    tokenizer's own special tokens), collapses whitespace (newlines could fake a new turn), replaces
    double quotes (fields are fenced in them) and truncates to ``max_chars`` characters.
    """
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = _CONTROL_TOKENS.sub(" ", str(text))
    for token in extra_tokens:
        if token:
            text = text.replace(token, " ")
    text = _WHITESPACE.sub(" ", text).replace('"', "'").strip()
    if len(text) > max_chars:
        text = text[: max_chars - 3].rstrip() + "..."
    return text


def describe_item(title: str, text: str = "", visual_cues: str = "") -> str:
    """One line per field, fenced, empty fields left out."""
    lines = [f'Title: "{clean_field(title) or "(untitled)"}"']
    if clean_field(text):
        lines.append(f'Description: "{clean_field(text)}"')
    if visual_cues:
        lines.append(f'Visual cues from the image: "{clean_field(visual_cues)}"')
    return "\n".join(lines)


# --- Stage 1: item summaries -------------------------------------------------------------------

# v2: small models (SmolLM2-135M) parroted v1's meta-instructions ("use only the information given") back
# instead of describing the item; the injection defence is structural (clean_field + quoted fields), so the
# instruction can stay short and name what matters for recommendation: the kind of item, colours, style.
ITEM_SUMMARY_INSTRUCTION = (
    "Write one short paragraph (at most three sentences) describing this item for a shopper: what it is, "
    "its main colours and its style."
)


def item_summary_messages(title: str, text: str = "", *, with_image: bool, visual_cues: str = "") -> list[dict]:
    """Messages asking for one paragraph about one item.

    ``with_image=True`` is the multimodal path (the processor receives the item image, one image
    per call as in the paper). Otherwise the image was textualized into ``visual_cues`` first
    (tags, colours) and a text-only LLM writes the paragraph. An item with no image gets neither.
    """
    item = describe_item(title, text, visual_cues)
    if with_image:
        content = [
            {"type": "image"},
            {"type": "text", "text": f"{ITEM_SUMMARY_INSTRUCTION}\n\nItem shown in the image:\n{item}"},
        ]
        return [{"role": "user", "content": content}]
    return [{"role": "user", "content": f"{ITEM_SUMMARY_INSTRUCTION}\n\nItem:\n{item}"}]


# --- Stage 2: user preference summaries --------------------------------------------------------


def _numbered(items: Sequence[str]) -> str:
    return "\n".join(f"{i}. {clean_field(s)}" for i, s in enumerate(items, start=1))


# v3: an optional worked example (one user turn + the answer) before every user-summary step. Without it,
# SmolLM2-135M copied the previous summary word for word in 151 of 164 update steps, so a user's summary kept
# describing their first three items; with it, 66 of 164, and the colour of the user's recent items is named in 36
# of 60 summaries instead of 7 (experiments/user_summary_example.py). The built-in example's items (teal and brown
# rain gear) belong to no dataset; its update step shows a change of taste kept as "lately ..., earlier ...". A small
# model copies the example's domain too (on MovieLens 134 of 943 summaries spoke of clothing), so a dataset can bring
# its own (``SummarizeConfig.user_example_file``).
@dataclass(frozen=True)
class UserSummaryExample:
    """A worked example for the user-summary prompts: a first step (items -> answer) and an update step (new items,
    with the first answer as the previous summary -> answer). Answers start with :data:`USER_SUMMARY_PREFIX`."""

    first_items: tuple[str, ...]
    first_answer: str
    update_items: tuple[str, ...]
    update_answer: str

    def __post_init__(self):
        for name in ("first", "update"):
            items, answer = getattr(self, f"{name}_items"), getattr(self, f"{name}_answer")
            if not items or not all(isinstance(i, str) and i.strip() for i in items):
                raise ValueError(f"The worked example's {name} step needs a non-empty list of item texts.")
            if not isinstance(answer, str) or not answer.startswith(USER_SUMMARY_PREFIX):
                raise ValueError(f'The worked example\'s {name} answer must start with "{USER_SUMMARY_PREFIX}".')


SHOP_USER_SUMMARY_EXAMPLE = UserSummaryExample(
    first_items=("Rain Jacket K-12 (teal)", "Pocket Umbrella B-33 (teal, white)", "Wool Scarf C-70 (teal)"),
    first_answer=f"{USER_SUMMARY_PREFIX} rain gear and warm accessories in teal: a rain jacket, an umbrella and a "
    "wool scarf.",
    update_items=("Leather Wallet D-51 (brown)", "Rain Boots H-08 (brown)", "Canvas Tote Q-77 (pink)"),
    update_answer=f"{USER_SUMMARY_PREFIX} rain gear and accessories; lately in brown (a leather wallet, rain boots), "
    "earlier in teal.",
)


def _user_summary_turn(block: Sequence[str], previous_summary: str | None) -> dict:
    if previous_summary:
        text = (
            f'Previous summary of the user\'s preferences: "{clean_field(previous_summary, 1200)}"\n\n'
            f"The user then interacted with these items, in order:\n{_numbered(block)}\n\n"
            "Rewrite the summary of the user's preferences so it also reflects these items, in at most "
            f'three sentences. Start with "{USER_SUMMARY_PREFIX}".'
        )
    else:
        text = (
            f"A user interacted with these items, in order:\n{_numbered(block)}\n\n"
            "Summarize the user's preferences (content, style, colours) in at most three sentences. "
            f'Start with "{USER_SUMMARY_PREFIX}".'
        )
    return {"role": "user", "content": text}


def user_summary_messages(
    block: Sequence[str], previous_summary: str | None = None, *, example: UserSummaryExample | None = None
) -> list[dict]:
    """One recurrent step: the items of this block (their texts) + the previous summary.

    Step 1 has no previous summary. The answer is forced to begin with :data:`USER_SUMMARY_PREFIX`
    by the caller (appended after the generation prompt). ``example`` puts a worked example of the same
    kind of step (first or update) before it, as an earlier user turn and its answer.
    """
    messages = []
    if example is not None:
        if previous_summary:
            messages += [_user_summary_turn(example.update_items, example.first_answer)]
            messages += [{"role": "assistant", "content": example.update_answer}]
        else:
            messages += [_user_summary_turn(example.first_items, None)]
            messages += [{"role": "assistant", "content": example.first_answer}]
    return messages + [_user_summary_turn(block, previous_summary)]


def direct_user_summary_messages(history: Sequence[str], *, example: UserSummaryExample | None = None) -> list[dict]:
    """The ablation: the whole history in one prompt, no recurrence."""
    return user_summary_messages(history, previous_summary=None, example=example)


# The textualized image (summarization.textualize writes it) names the image's colours after this label.
CUE_COLOURS_LABEL = "main colours: "


def cue_colours(cues: str | None) -> list[str]:
    """The colour names of a cue string written by ``summarization.textualize.Textualizer`` ([] when none)."""
    for part in (cues or "").split(";"):
        part = part.strip()
        if part.startswith(CUE_COLOURS_LABEL):
            return [c.strip() for c in part[len(CUE_COLOURS_LABEL) :].split(",") if c.strip()]
    return []


# --- Stage 3: the recommender ------------------------------------------------------------------

RECOMMEND_QUESTION = "Will the user interact with the candidate item below? Answer Yes or No."


def recommend_user_text(user_summary: str, item_tokens: str = "") -> str:
    """The part of the question that is the same for all of a user's candidates (the shared prefix).

    The question comes before the candidate (since msr-prompts-v4; v3 asked it after each candidate): a packed training
    sequence then holds it once per user instead of once per candidate, 15 fewer tokens in each of the 21 branches.
    ``item_tokens``: the history's collaborative tokens (one placeholder per item, added after cleaning, so a data
    field can never forge one; `hf_mllm_msr.recommendation.collaborative`).
    """
    history = f"\nHistory item tokens: {item_tokens}" if item_tokens else ""
    return (
        f'User preference summary: "{clean_field(user_summary, 2000)}"{history}\n\n{RECOMMEND_QUESTION}\n\n'
        "Candidate item:"
    )


def recommend_candidate_text(title: str, item_summary: str = "", item_token: str = "") -> str:
    """The candidate-specific part: its title (then its collaborative token, if any) and, when given, its summary
    (each capped by :func:`clean_field`)."""
    lines = [f'Title: "{clean_field(title) or "(untitled)"}"' + (f" {item_token}" if item_token else "")]
    if item_summary:
        lines.append(f'About the item: "{clean_field(item_summary, 1000)}"')
    return "\n".join(lines)


def recommend_messages(
    user_summary: str,
    title: str,
    item_summary: str = "",
    *,
    with_image: bool,
    history_item_tokens: str = "",
    candidate_item_token: str = "",
) -> list[dict]:
    """User turn of the Yes/No recommender; the candidate image (if any) sits right before its title,
    after the user part, so every candidate of a user shares the same prefix. The item tokens are the collaborative
    placeholders (`hf_mllm_msr.recommendation.collaborative`), empty without them."""
    user_text = recommend_user_text(user_summary, history_item_tokens)
    cand_text = recommend_candidate_text(title, item_summary, candidate_item_token)
    if with_image:
        content = [
            {"type": "text", "text": user_text + "\n"},
            {"type": "image"},
            {"type": "text", "text": cand_text},
        ]
    else:
        content = [{"type": "text", "text": f"{user_text}\n{cand_text}"}]
    return [{"role": "user", "content": content}]


def title_history_summary(titles: Sequence[str], max_items: int = 20, texts: Sequence[str] | None = None) -> str:
    """User representation of the title-only (TALLRec-style) baseline: no image information at all. ``texts``: each
    item's catalogue text (MovieLens: its genres and year), shown in brackets after its title."""
    titles = [clean_field(t, 120) for t in titles]
    if texts is not None:
        titles = [f"{t} [{clean_field(x, 200)}]" if clean_field(x, 200) else t for t, x in zip(titles, texts)]
    return "The user recently interacted with: " + "; ".join(titles[-max_items:]) + "."
