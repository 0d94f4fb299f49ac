"""Sentence encoders (BERT / RoBERTa / MiniLM style checkpoints) scored on sentence pairs.

A checkpoint folder of a transformers encoder (``BertModel``, ``RobertaModel``, ...) becomes a
``SentenceEncoder``: the encoder, then the mean of its last hidden states over each sentence's
tokens, L2-normalised (the sentence-transformers pooling of all-MiniLM-L6-v2). Its inputs are
sentence pairs ``input_ids`` / ``attention_mask`` ``[P, 2, T]`` (one row per pair), from a pairs
file: JSONL with ``a``, ``b`` and an optional ``group`` per line, or CSV rows ``a,b[,group]``
(``load_pairs``); the default is the bundled ``assets/pairs/topics.jsonl`` (24 pairs: 5 topics,
and unrelated pairs).

Outputs (``PAIR_OUTPUTS``): ``pair_similarity`` (the cosine similarity of each pair, ``[P]`` per
coalition) and ``embedding`` (both pooled sentence embeddings, ``[P, 2, H]``). Units: those of
``zoo.hf.granularities_of`` (heads, attention and MLP blocks, MLP neurons, layers); post-norm
encoder blocks are lesioned at their output projections, before the residual add and LayerNorm.

>>> [pair.group for pair in load_pairs("topics").pairs][:2]
['animals', 'animals']
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from msa_core.errors import MSAInputError
from msa_core.zoo.weights import ASSETS, hub_offline, tensor_digest

if TYPE_CHECKING:  # imported where used: the card module imports the lesion machinery
    from msa_core.zoo.card import LoadedModel, ModelCard

hub_offline()  # before transformers is imported

PAIRS_DIR = ASSETS / "pairs"
DEFAULT_PAIRS = "topics"
PAIR_FIELDS = ("a", "b", "group")
MAX_PAIRS = 1000
MAX_TOKENS = 128  # longer sentences are refused: every coalition pays for every token
PAIR_OUTPUTS = ("pair_similarity", "embedding")


@dataclass(frozen=True)
class SentencePair:
    a: str
    b: str
    group: str = "all"


class GroupedRows:
    """A named file of rows (frozen dataclasses of strings, the last one ``group``), as the
    sentence-pair and masked-sentence files hold them: its groups, and its identity ``digest()``."""

    @property
    def entries(self) -> tuple[Any, ...]:
        """The rows, in file order."""
        raise NotImplementedError

    @property
    def groups(self) -> tuple[str, ...]:
        """The distinct groups in order of first appearance."""
        return tuple(dict.fromkeys(row.group for row in self.entries))

    def digest(self) -> str:
        rows = [list(astuple(row)) for row in self.entries]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


@dataclass(frozen=True)
class Pairs(GroupedRows):
    """A named list of sentence pairs; its identity is ``digest()``."""

    name: str
    pairs: tuple[SentencePair, ...]

    @property
    def entries(self) -> tuple[SentencePair, ...]:
        return self.pairs


def _pair(row: Any, where: str) -> SentencePair:
    if not isinstance(row, dict):
        raise MSAInputError(f"{where}: a pair must be an object with a, b[, group]")
    unknown = sorted(set(row) - set(PAIR_FIELDS))
    if unknown:
        raise MSAInputError(f"{where}: unknown fields {unknown}; allowed: {', '.join(PAIR_FIELDS)}")
    texts = [row.get("a"), row.get("b")]
    if not all(isinstance(text, str) and text.strip() for text in texts):
        raise MSAInputError(f"{where}: a and b must be non-empty sentences")
    group = row.get("group") or "all"
    if not isinstance(group, str):
        raise MSAInputError(f"{where}: group must be text")
    return SentencePair(row["a"], row["b"], group)


def table_rows(text: str, name: str, kind: str, most: int) -> list[tuple[Any, str]]:
    """The rows of JSONL (``kind="jsonl"``) or CSV (``kind="csv"``, with a header) text, each with
    where it came from (``"<name> line <n>"``).

    Raises:
        MSAInputError: a line that is not JSON, an unknown kind, or no rows / more than ``most``.
    """
    if kind == "jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((json.loads(line), f"{name} line {number}"))
                except ValueError as err:
                    raise MSAInputError(f"{name} line {number} is not JSON: {err}") from None
    elif kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        rows = [(dict(row), f"{name} line {reader.line_num}") for row in reader]
    else:
        raise MSAInputError(f"unknown file format {kind!r}; allowed: jsonl, csv")
    if not rows or len(rows) > most:
        raise MSAInputError(f"{name} has {len(rows)} rows; give 1 to {most}")
    return rows


def parse_pairs(text: str, name: str, kind: str) -> Pairs:
    """Pairs from JSONL (``kind="jsonl"``) or CSV (``kind="csv"``, header ``a,b[,group]``) text."""
    rows = table_rows(text, name, kind, MAX_PAIRS)
    return Pairs(name, tuple(_pair(row, where) for row, where in rows))


def bundled_pairs() -> list[str]:
    """Names of the bundled pair sets."""
    return bundled_in(PAIRS_DIR)


def bundled_in(folder: Path) -> list[str]:
    """Names of the bundled ``.jsonl`` sets in ``folder``."""
    return sorted(path.stem for path in folder.glob("*.jsonl"))


def read_sentence_file(source: str | Path, folder: Path, what: str) -> tuple[str, str, str]:
    """(text, file name, ``"jsonl"`` or ``"csv"``) of a ``.jsonl`` / ``.csv`` file or of the
    bundled set named ``source`` in ``folder``.

    Raises:
        MSAInputError: neither such a file nor a bundled set's name, or unreadable.
    """
    if str(source) in bundled_in(folder):
        path = folder / f"{source}.jsonl"
    else:
        path = Path(source).expanduser()
        if path.suffix.lower() not in (".jsonl", ".csv") or not path.is_file():
            raise MSAInputError(
                f"{what} {str(source)!r} is neither a .jsonl/.csv file nor a bundled set; "
                f"bundled: {', '.join(bundled_in(folder))}"
            )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MSAInputError(f"cannot read {what} file {path}: {err}") from None
    return text, path.name, path.suffix.lower()[1:]


def load_pairs(source: str | Path | Pairs) -> Pairs:
    """Pairs from a ``.jsonl`` / ``.csv`` file, a bundled set's name, or ``Pairs``.

    Raises:
        MSAInputError: not found, unreadable, or a bad row (naming its line).
    """
    if isinstance(source, Pairs):
        return source
    return parse_pairs(*read_sentence_file(source, PAIRS_DIR, "pairs"))


class SentenceEncoder(nn.Module):
    """A transformers encoder plus mean pooling (and L2 normalisation when ``normalize``).

    ``forward(input_ids [B, S, T], attention_mask [B, S, T]) -> embeddings [B, S, H]``: S sentences
    per row (a pair: S = 2), run as ``B * S`` sequences. ``encoder`` may be a masked LM
    (``BertForMaskedLM``, ...; then ``masked_lm`` is True): the embeddings come from its encoder,
    and ``forward(input_ids [M, T], attention_mask [M, T], mask_index [M]) -> logits [M, V]`` gives
    its prediction at each row's masked position (``zoo.masked``).
    """

    def __init__(self, encoder: nn.Module, normalize: bool = True):
        super().__init__()
        self.encoder, self.normalize = encoder, normalize
        self.config = getattr(encoder, "config", None)  # head counts for the unit specs
        heads = getattr(encoder, "get_output_embeddings", None)
        self.masked_lm = heads is not None and heads() is not None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if mask_index is not None:
            if not self.masked_lm:
                raise MSAInputError("this encoder has no masked-LM head; it cannot fill a [MASK]")
            logits = self.encoder(input_ids=input_ids, attention_mask=attention_mask).logits
            return logits[torch.arange(len(logits), device=logits.device), mask_index]
        rows, sentences = input_ids.shape[:2]
        mask = attention_mask.flatten(0, 1)
        base = getattr(self.encoder, "base_model", self.encoder)
        hidden = base(input_ids=input_ids.flatten(0, 1), attention_mask=mask)
        states = hidden.last_hidden_state if hasattr(hidden, "last_hidden_state") else hidden[0]
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return pooled.view(rows, sentences, -1)


def encode_pairs(pairs: Pairs, tokenizer: Any) -> dict[str, torch.Tensor]:
    """``{"input_ids", "attention_mask"}`` ``[P, 2, T]``, padded to the longest sentence.

    Raises:
        MSAInputError: a sentence longer than ``MAX_TOKENS`` tokens.
    """
    sentences = [text for pair in pairs.pairs for text in (pair.a, pair.b)]
    ids = [tokenizer(text)["input_ids"] for text in sentences]
    longest = max(len(row) for row in ids)
    if longest > MAX_TOKENS:
        raise MSAInputError(f"{pairs.name}: a sentence has {longest} tokens; at most {MAX_TOKENS}")
    pad = tokenizer.pad_token_id or 0
    input_ids = torch.tensor([row + [pad] * (longest - len(row)) for row in ids])
    mask = torch.tensor([[1] * len(row) + [0] * (longest - len(row)) for row in ids])
    return {
        "input_ids": input_ids.view(len(pairs.pairs), 2, longest),
        "attention_mask": mask.view(len(pairs.pairs), 2, longest),
    }


def similarity(raw: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the two sentences of each row: ``[R, 2, H] -> [R]``."""
    return F.cosine_similarity(raw[:, 0].float(), raw[:, 1].float(), dim=-1)


PAIR_VALUE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "pair_similarity": similarity,
    "embedding": lambda raw: raw.float(),
}


def _output_factory(name: str) -> Any:
    def make(inputs: Any, labels: Any) -> Callable[[Any], torch.Tensor]:
        ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
        if not isinstance(ids, torch.Tensor) or ids.ndim != 3 or ids.shape[1] != 2:
            raise MSAInputError(
                f"output={name!r} needs sentence pairs: input_ids [P, 2, T] (encode_pairs)"
            )
        return PAIR_VALUE[name]

    return make


def load_encoder(
    directory: str | Path,
    pairs: str | Path | Pairs | None = None,
    name: str | None = None,
    facts: dict[str, Any] | None = None,
) -> LoadedModel:
    """A sentence-encoder checkpoint folder as a ``LoadedModel`` scored on ``pairs``.

    Args:
        directory: ``config.json`` + ``*.safetensors`` of a transformers encoder + its tokenizer.
        pairs: anything ``load_pairs`` reads (default: the bundled ``topics`` set).
        name: the model's name (default: the folder's name).
        facts: more facts for the card.
    Raises:
        MSAInputError: not a loadable encoder folder, no tokenizer, or bad pairs.
    """
    from msa_core.zoo.card import LoadedModel, ModelCard
    from msa_core.zoo.hf import (
        _check_directory,
        _not_trainable,
        granularities_of,
        load_tokenizer,
    )

    directory = Path(directory).expanduser()
    _check_directory(directory)
    pair_set = load_pairs(pairs if pairs is not None else DEFAULT_PAIRS)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        encoder = encoder_class(config).from_pretrained(
            directory, local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
    except Exception as err:  # noqa: BLE001  (transformers raises many kinds for a bad folder)
        raise MSAInputError(
            f"cannot load {directory} as an encoder with transformers: {type(err).__name__}: {err}"
        ) from None
    tokenizer = load_tokenizer(directory)
    if tokenizer is None:
        raise MSAInputError(f"{directory} has no tokenizer; sentence pairs need one")
    model = SentenceEncoder(encoder).eval()
    inputs = encode_pairs(pair_set, tokenizer)
    name = name or directory.name
    card = ModelCard(
        name=name,
        family="encoder",
        description=f"{config.model_type} sentence encoder at {directory}",
        granularities=granularities_of(model),
        outputs=PAIR_OUTPUTS,
        build=lambda: model,
        data=lambda: (inputs, None),
        train=_not_trainable(name),
        output_fns={output: _output_factory(output) for output in PAIR_OUTPUTS},
        facts={
            "path": str(directory),
            "model_type": config.model_type,
            "architecture": architecture_of(config),
            **(facts or {}),
            **pair_facts(pair_set),
        },
    )
    return LoadedModel(
        card, model, inputs, None, tensor_digest(model.state_dict()), tokenizer=tokenizer
    )


ENCODER_ARCHITECTURES = ("Model", "ForMaskedLM")  # endings of config.json "architectures"


def architecture_of(config: Any) -> str:
    """The first architecture a config names (``"BertModel"``), or its model type."""
    names = getattr(config, "architectures", None) or [config.model_type]
    return str(names[0])


def encoder_class(config: Any) -> Any:
    """``AutoModelForMaskedLM`` for a ``*ForMaskedLM`` checkpoint (its head is kept for
    ``masked_token_logprob``), else ``AutoModel``."""
    from transformers import AutoModel, AutoModelForMaskedLM

    return AutoModelForMaskedLM if architecture_of(config).endswith("ForMaskedLM") else AutoModel


def pair_facts(pair_set: Pairs) -> dict[str, Any]:
    """The card facts that describe an encoder's pairs: their set, groups and each pair's group."""
    return {
        "pairs": pair_set.name,
        "groups": list(pair_set.groups),
        "row_groups": [pair.group for pair in pair_set.pairs],
    }


def is_encoder_folder(directory: str | Path) -> bool:
    """Whether a checkpoint folder's ``config.json`` names an encoder architecture (``BertModel``,
    ``RobertaForMaskedLM``, ...) rather than a causal LM; False when it cannot tell."""
    try:
        config = json.loads((Path(directory).expanduser() / "config.json").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    names = config.get("architectures") if isinstance(config, dict) else None
    return (
        isinstance(names, list)
        and bool(names)
        and not config.get("is_decoder")
        and not config.get("is_encoder_decoder")
        and all(isinstance(n, str) and n.endswith(ENCODER_ARCHITECTURES) for n in names)
    )


def encoder_card(
    directory: str | Path, name: str, description: str, facts: dict[str, Any]
) -> ModelCard:
    """The card of an encoder folder in the model store, from its config alone (meta device)."""
    from msa_core.zoo.card import ModelCard
    from msa_core.zoo.hf import _check_directory, _not_trainable, granularities_of

    directory = Path(directory)
    _check_directory(directory)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    with torch.device("meta"):
        skeleton = SentenceEncoder(encoder_class(config).from_config(config))
    return ModelCard(
        name=name,
        family="encoder",
        description=description,
        granularities=granularities_of(skeleton),
        outputs=PAIR_OUTPUTS,
        build=lambda: load_encoder(directory).model,
        data=lambda: (None, None),
        train=_not_trainable(name),
        checkpoint=str(directory),
        facts={
            "path": str(directory),
            "model_type": config.model_type,
            "architecture": architecture_of(config),
            **facts,
        },
    )


def with_pairs(loaded: LoadedModel, pairs: str | Path | Pairs) -> LoadedModel:
    """``loaded`` (an encoder) scored on other sentence pairs (anything ``load_pairs`` reads)."""
    from dataclasses import replace

    pair_set = load_pairs(pairs)
    return replace(
        loaded,
        card=replace(loaded.card, facts={**loaded.card.facts, **pair_facts(pair_set)}),
        inputs=encode_pairs(pair_set, loaded.tokenizer),
    )
