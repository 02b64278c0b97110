"""Grammar-constrained greedy decoding for the transformers backend: grounded summaries from any HF model.

llama.cpp applies a request's GBNF grammar itself (``backend: xllamacpp``). A transformers model, e.g. a VLM on a GPU,
gets the same grammar through llguidance (guidance-ai's structured-output engine, one of vLLM's and SGLang's grammar
backends), which converts GBNF and computes, at every step, which tokens of the vocabulary keep the text inside the
grammar. :class:`GrammarLogitsProcessor` sets every other logit to -inf, so greedy decoding picks the model's best
allowed token, as llama.cpp does.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from transformers import LogitsProcessor

logger = logging.getLogger(__name__)


def _llguidance():
    # Imported in a try block: transformers' remote-code loader then does not demand llguidance from every user of
    # a saved pipeline (only grounded summaries need it).
    try:
        import llguidance
        import llguidance.hf
    except ImportError as err:
        raise ImportError(
            "Grammar-constrained summaries (user_format: grounded) with backend: transformers need llguidance: "
            "pip install 'hf_mllm_msr[grounded]' (or llguidance), or use backend: xllamacpp with a GGUF model."
        ) from err
    return llguidance


def grammar_engine(tokenizer, eos_token_id: int):
    """llguidance's view of a fast HF tokenizer, ending a complete grammar with ``eos_token_id`` (about 1 s to
    build: a generator keeps it)."""
    llguidance = _llguidance()
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"Grammar-constrained decoding needs a fast tokenizer; {type(tokenizer).__name__} is not one. Load it "
            "with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    return llguidance.hf.from_tokenizer(tokenizer, eos_token=eos_token_id)


def lark_grammar(llguidance, grammar: str) -> str:
    """llguidance's form of a GBNF grammar. llguidance's converter does not read token references (``<[id]>``,
    which ``summary_grammar(tokenize=...)`` writes); a grammar of ``name ::= body`` lines is Lark once ``::=`` is
    ``:`` and ``root`` is ``start``, and Lark rules (lower-case names) take token references as they are."""
    if "<[" not in grammar:
        return llguidance.grammar_from("gbnf", grammar)
    rules = []
    for line in grammar.splitlines():
        name, _, body = line.partition(" ::= ")
        if not body or not name.isidentifier():
            raise ValueError(f"expected one 'name ::= body' rule per line, got {line!r}")
        rules.append(f"{'start' if name == 'root' else name}: {body}")
    return llguidance.grammar_from("lark", "\n".join(rules))


class GrammarLogitsProcessor(LogitsProcessor):
    """Per batch row, only the tokens its GBNF grammar allows next; a row without a grammar ("") is left alone.

    Once a row's grammar is complete (or the row has stopped), only ``eos_token_id`` is allowed, so ``generate``
    ends it. The first call sees the prompts; every later call first feeds each row's last token to its matcher.
    """

    def __init__(self, engine, grammars: list[str], eos_token_id: int):
        llguidance = _llguidance()
        self.matchers = []
        for index, grammar in enumerate(grammars):
            if not grammar:
                self.matchers.append(None)
                continue
            try:
                matcher = llguidance.LLMatcher(engine, lark_grammar(llguidance, grammar), log_level=0)
            except ValueError as err:  # raised by the GBNF conversion
                raise ValueError(f"Request {index}: the grammar is not valid GBNF ({err}):\n{grammar}") from err
            if matcher.is_error():
                raise ValueError(
                    f"Request {index}: llguidance rejects the grammar ({matcher.get_error()}):\n{grammar}"
                )
            self.matchers.append(matcher)
        self.eos_token_id = eos_token_id
        self.prompt_length: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        elif input_ids.shape[1] > self.prompt_length:
            for row, (matcher, token) in enumerate(zip(self.matchers, input_ids[:, -1].tolist())):
                live = matcher is not None and not (matcher.is_stopped() or matcher.is_error())
                if live and not matcher.consume_token(token):
                    # Cannot happen with the masks below; if it does, the row ends and the summary is parsed as is.
                    logger.warning("Row %d left its grammar (%s); it ends there.", row, matcher.get_error())
        allowed = np.zeros(scores.shape, dtype=bool)
        for row, matcher in enumerate(self.matchers):
            if matcher is None:
                allowed[row] = True
            elif matcher.is_stopped() or matcher.is_error():
                allowed[row, self.eos_token_id] = True
            else:
                bias = np.frombuffer(matcher.compute_logit_bias(), dtype=np.uint8)[: scores.shape[1]]
                allowed[row, : len(bias)] = bias > 0  # a model may have more logits than tokens: those stay off
        return scores.masked_fill(torch.from_numpy(~allowed).to(scores.device), float("-inf"))
