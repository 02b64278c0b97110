"""Grounded user summaries: the summarizer picks what it keeps, but only from what its input states.

A free-text recurrent summary from SmolLM2-135M keeps almost nothing of a MovieLens history beyond the item prior
(``experiments/probe_summary_ceiling.py``): it names genres the history never had, copies the prompt's example and
loops. A template that keeps the history's top genres and last titles lifts the same recommender by +0.074
(``experiments/oracle_user_summaries.py``). Grounded summaries sit between the two: at every recurrent step the
LLM still writes the summary, greedily, but under a grammar whose only words are the tags (e.g. genres) and titles of
that step's items and of the previous summary::

    The user appears to have a preference for Drama, Comedy and Romance. Recently: Heat (1995); Fargo (1996).

So the model chooses which tags and titles to keep (up to three of each; the last tag and the first title from the
step's own items, newest title first) and cannot invent anything or lose the format. The grammar is GBNF: llama.cpp
applies it with ``backend: xllamacpp``, llguidance with a transformers model (``summarization/constrained.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..prompts import USER_SUMMARY_PREFIX

MAX_TAGS = 3
MAX_TITLES = 3
RECENT = ". Recently: "
NO_TAGS = "items"  # what the summary says when no item of the step has a tag


@dataclass
class GroundedItem:
    """One history item as the grammar sees it: its title and its tags (e.g. the genres column)."""

    title: str
    tags: tuple[str, ...] = ()


@dataclass
class Grounding:
    """What a summary may name: the tags and titles kept by the previous step, then the new block's (in order)."""

    tags: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)

    def extend(self, block: list[GroundedItem]) -> Grounding:
        tags, titles = list(self.tags), list(self.titles)
        for item in block:
            tags += [t for t in dict.fromkeys(item.tags) if t and t not in tags]
            if item.title and item.title not in titles:
                titles.append(item.title)
        return Grounding(tags, titles)


def _literal(text: str) -> str:
    """A GBNF string literal (backslash, quote and newline escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def summary_grammar(
    options: Grounding, new: Grounding | None = None, tokenize: Callable[[str], list[int]] | None = None
) -> str:
    """The GBNF grammar of one step's continuation after :data:`USER_SUMMARY_PREFIX` (which the caller forces).

    ``new``: the tags and titles of the step's own items. The last tag and the first title must be among them, so
    every step reflects what it read: SmolLM2-135M, free to choose, copied the previous summary from step 2 on.

    ``tokenize``: the summarizer's text -> token ids. Given, every piece (" Drama", ",", " and", " Heat (1995)", ...)
    is fixed to its own tokenization (GBNF token references ``<[id]>``, read by llama.cpp and llguidance), so a word
    cannot start with a bare space token. Over characters, SmolLM2-135M began 33 of 40 summaries with the bare " "
    (it is the first character of many likely words) and then picked the first genre from a confused state."""
    new = new or options
    new_tags, new_titles = new.tags or options.tags, new.titles or options.titles

    def pieces(texts: list[str]) -> str:
        if tokenize is None:
            return " | ".join(_literal(text) for text in texts)
        return " | ".join(" ".join(f"<[{i}]>" for i in tokenize(text)) for text in texts)

    if options.tags:
        tags = f"(tag {pieces([','])})? (tag {pieces([' and'])})? newtag"
    else:
        tags = pieces([" " + NO_TAGS])
    if options.titles:
        recent = (
            f"{pieces([RECENT.rstrip()])} newtitle ({pieces([';'])} title)? ({pieces([';'])} title)? {pieces(['.'])}"
        )
    else:
        recent = pieces(["."])
    rules = [f"root ::= {tags} {recent}"]
    if options.tags:  # a word carries the space before it: that is how the tokenizer cuts it
        rules.append("tag ::= " + pieces([" " + tag for tag in options.tags]))
        rules.append("newtag ::= " + pieces([" " + tag for tag in new_tags]))
    if options.titles:
        rules.append("title ::= " + pieces([" " + title for title in options.titles]))
        rules.append("newtitle ::= " + pieces([" " + title for title in new_titles]))
    return "\n".join(rules)


def _match(text: str, options: list[str], separators: tuple[str, ...]) -> tuple[list[str], str]:
    """The options ``text`` starts with, longest first, joined by ``separators``; returns ``(picked, rest)``."""
    picked = []
    by_length = sorted(options, key=len, reverse=True)
    while True:
        option = next((o for o in by_length if text.startswith(o)), None)
        if option is None:
            return picked, text
        picked.append(option)
        text = text[len(option) :]
        separator = next((s for s in separators if text.startswith(s)), None)
        if separator is None:
            return picked, text
        text = text[len(separator) :]


def parse_grounded(continuation: str, options: Grounding) -> Grounding:
    """The tags and titles a generated continuation picked (repeats dropped, at most three of each)."""
    text = continuation.strip()
    tags, rest = _match(text, options.tags, (", ", " and "))
    titles = []
    if rest.startswith(RECENT):
        titles, _ = _match(rest[len(RECENT) :], options.titles, ("; ",))
    # A repeat keeps the tag's last place and the title's first: the step's own tag is last, its own title first.
    tags = list(dict.fromkeys(reversed(tags)))[::-1]
    return Grounding(tags[-MAX_TAGS:], list(dict.fromkeys(titles))[:MAX_TITLES])


def grounded_summary(kept: Grounding) -> str:
    """The summary text of what a step kept, in the grammar's own format (repeats removed)."""
    tags = kept.tags or [NO_TAGS]
    text = f"{USER_SUMMARY_PREFIX} " + (tags[0] if len(tags) == 1 else ", ".join(tags[:-1]) + " and " + tags[-1])
    return text + (RECENT + "; ".join(kept.titles) if kept.titles else "") + "."
