"""Masked-token log-probs of an encoder with a masked-LM head (``BertForMaskedLM``,
``RobertaForMaskedLM``, ...): each input is a sentence with one ``[MASK]`` and the word that fills
it.

A masked-sentence file is JSONL with ``text`` (one ``[MASK]``), ``answer`` and an optional ``group``
per line, or CSV rows ``text,answer[,group]``; the bundled set is ``assets/masked/facts.jsonl``.
``[MASK]`` stands for the tokenizer's own mask token (RoBERTa's ``<mask>``), and the answer must be
one token of the vocabulary. Inputs: ``input_ids`` / ``attention_mask`` ``[M, T]`` and ``mask_index
[M]`` (the masked position of each row); labels: the answers' token ids ``[M]``. The output
``masked_token_logprob`` is the log-probability of each answer at its mask, ``[M]`` per coalition.

>>> [row.group for row in load_masked("facts").rows][:2]
['capitals', 'capitals']
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from msa_core.errors import MSAInputError
from msa_core.lesion import CustomOutput
from msa_core.lesion.outputs import make_output
from msa_core.zoo.encoder import MAX_TOKENS, GroupedRows, read_sentence_file, table_rows
from msa_core.zoo.weights import ASSETS

MASKED_DIR = ASSETS / "masked"
MASK = "[MASK]"
MASKED_FIELDS = ("text", "answer", "group")
MAX_SENTENCES = 1000
MASKED_OUTPUT = "masked_token_logprob"


@dataclass(frozen=True)
class MaskedSentence:
    text: str  # with exactly one "[MASK]"
    answer: str
    group: str = "all"


@dataclass(frozen=True)
class MaskedSentences(GroupedRows):
    """A named list of masked sentences; its identity is ``digest()``."""

    name: str
    rows: tuple[MaskedSentence, ...]

    @property
    def entries(self) -> tuple[MaskedSentence, ...]:
        return self.rows


def _sentence(row: Any, where: str) -> MaskedSentence:
    if not isinstance(row, dict):
        raise MSAInputError(f"{where}: a row must be an object with text, answer[, group]")
    unknown = sorted(set(row) - set(MASKED_FIELDS))
    if unknown:
        raise MSAInputError(
            f"{where}: unknown fields {unknown}; allowed: {', '.join(MASKED_FIELDS)}"
        )
    text, answer, group = row.get("text"), row.get("answer"), row.get("group") or "all"
    if not isinstance(text, str) or text.count(MASK) != 1:
        raise MSAInputError(f"{where}: text must be a sentence with exactly one {MASK}")
    if not isinstance(answer, str) or not answer.strip():
        raise MSAInputError(f"{where}: answer must be the word that fills {MASK}")
    if not isinstance(group, str):
        raise MSAInputError(f"{where}: group must be text")
    return MaskedSentence(text, answer.strip(), group)


def load_masked(source: str | Path | MaskedSentences) -> MaskedSentences:
    """Masked sentences from a ``.jsonl`` / ``.csv`` file or a bundled set's name.

    Raises:
        MSAInputError: not found, unreadable, or a bad row (naming its line).
    """
    if isinstance(source, MaskedSentences):
        return source
    text, name, kind = read_sentence_file(source, MASKED_DIR, "masked sentences")
    rows = table_rows(text, name, kind, MAX_SENTENCES)
    return MaskedSentences(name, tuple(_sentence(row, where) for row, where in rows))


def is_masked_source(source: str | Path) -> bool:
    """Whether ``source`` names masked sentences (a bundled set, or a file whose first row has
    ``text``) rather than sentence pairs."""
    try:
        text, name, kind = read_sentence_file(source, MASKED_DIR, "masked sentences")
        first, _ = table_rows(text, name, kind, MAX_SENTENCES)[0]
    except MSAInputError:
        return False
    return isinstance(first, dict) and "text" in first


def encode_masked(
    sentences: MaskedSentences, tokenizer: Any
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Inputs ``{"input_ids", "attention_mask"}`` ``[M, T]`` (padded) with ``mask_index [M]``, and
    the answers' token ids ``[M]``.

    Raises:
        MSAInputError: a tokenizer without a mask token, an answer that is not one token, or a
            sentence longer than ``MAX_TOKENS`` tokens.
    """
    mask = getattr(tokenizer, "mask_token", None)
    if not mask:
        raise MSAInputError("the tokenizer has no mask token; masked sentences need one")
    ids, positions, answers = [], [], []
    for number, row in enumerate(sentences.rows, 1):
        where = f"{sentences.name} row {number}"
        pieces = tokenizer(row.answer, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1 or pieces[0] == getattr(tokenizer, "unk_token_id", None):
            what = f"{len(pieces)} tokens" if len(pieces) != 1 else "not in the vocabulary"
            raise MSAInputError(
                f"{where}: the answer {row.answer!r} is {what}; give a word that is one token "
                "of the model's vocabulary"
            )
        tokens = tokenizer(row.text.replace(MASK, mask))["input_ids"]
        if len(tokens) > MAX_TOKENS:
            raise MSAInputError(f"{where} has {len(tokens)} tokens; at most {MAX_TOKENS}")
        ids.append(tokens)
        positions.append(tokens.index(tokenizer.mask_token_id))
        answers.append(pieces[0])
    longest = max(len(row) for row in ids)
    pad = tokenizer.pad_token_id or 0
    inputs = {
        "input_ids": torch.tensor([row + [pad] * (longest - len(row)) for row in ids]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in ids]),
        "mask_index": torch.tensor(positions),
    }
    return inputs, torch.tensor(answers)


def masked_output(inputs: Any, labels: torch.Tensor | None) -> CustomOutput:
    """The ``masked_token_logprob`` output of a game on masked sentences (``encode_masked``).

    Raises:
        MSAInputError: the game's inputs are not masked sentences.
    """
    if not isinstance(inputs, dict) or "mask_index" not in inputs or labels is None:
        raise MSAInputError(
            f"output={MASKED_OUTPUT!r} needs masked sentences (a .jsonl of text with one {MASK}, "
            "answer[, group]; bundled: facts), e.g. --task facts"
        )
    return CustomOutput(make_output("target_logprob", inputs, labels))


def with_masked(loaded: Any, source: str | Path | MaskedSentences) -> Any:
    """``loaded`` (an encoder with a masked-LM head) scored on masked sentences: its only output is
    then ``masked_token_logprob``.

    Raises:
        MSAInputError: the checkpoint has no masked-LM head, or bad sentences.
    """
    if not getattr(loaded.model, "masked_lm", False):
        raise MSAInputError(
            f"{loaded.card.name} has no masked-LM head (its checkpoint is "
            f"{loaded.card.facts.get('architecture', 'an encoder without one')}); masked-token "
            "log-probs need a *ForMaskedLM checkpoint (e.g. BertForMaskedLM)"
        )
    sentences = load_masked(source)
    inputs, answers = encode_masked(sentences, loaded.tokenizer)
    facts = {
        **{key: value for key, value in loaded.card.facts.items() if key != "pairs"},
        "masked": sentences.name,
        "groups": list(sentences.groups),
        "row_groups": [row.group for row in sentences.rows],
    }
    card = replace(
        loaded.card,
        outputs=(MASKED_OUTPUT,),
        output_fns={**loaded.card.output_fns, MASKED_OUTPUT: masked_output},
        facts=facts,
    )
    return replace(loaded, card=card, inputs=inputs, labels=answers)
