"""Study 2 stand-in: a tiny byte-level ``MixtralForCausalLM`` trained on five languages of Debian
fortunes.

Languages: English and Polish (Latin script; Polish with its own letters ą ę ł ś ż ...), Russian and
Bulgarian (Cyrillic) and Chinese (Han, three bytes per character): at most two languages per script.
Measured (bench/study2.py): with three Latin languages (English, Spanish, Polish) the layer-0
experts that carry the Latin script serve all three, and no Latin language reached the 3x selective
lesion (2.2-3.0x, with router aux-loss 0.002 or 0); with two per script, each script's experts are
selective for its pair (Russian and Bulgarian share them: what the model learns is script first,
language second). Byte-level: token ids 0-255 are bytes, 256 starts every text. Training is plain
next-byte prediction with Mixtral's load-balancing loss; it never sees a language label. Players:
the 32 routed experts (4 layers x 8, top-2), lesioned at the router (``Experts(mode="remove")``:
routing unchanged, the expert's output dropped, as in the paper); heads too. Default inputs:
held-out sentences per language (``assets/moe-*-heldout.json``), 4 per language, each
``BOS + first 32 bytes``; lesions are evaluated on 16 others per language (``BOS + 48 bytes``).

Outputs: ``target_logprob`` (log-prob of each true next byte, ``[B, T-1]`` per coalition) and
``language_logprob`` (``[B, n_languages]``: a sentence's mean log-prob in its language's column,
scaled so that the mean over the batch is each language's mean log-prob; zeros elsewhere).
"""

from __future__ import annotations

import json
import math
import time
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.lesion.outputs import CustomOutput, make_output
from msa_core.units import Experts, Heads
from msa_core.zoo.card import ModelCard
from msa_core.zoo.weights import ASSETS, hub_offline

hub_offline()  # before transformers is imported

NAME = "moe-fortunes-5lang"
LANGUAGES = ("en", "pl", "ru", "bg", "zh")
LANGUAGE_NAMES = {
    "en": "English",
    "es": "Spanish",
    "pl": "Polish",
    "ru": "Russian",
    "bg": "Bulgarian",
    "zh": "Chinese",
}
# Latin-script indices
LATIN = tuple(i for i, language in enumerate(LANGUAGES) if language in ("en", "pl"))
PROMPT_BYTES, CONTINUATION_BYTES = 24, 40
BOS, VOCAB = 256, 257
HIDDEN, INTERMEDIATE, LAYERS, HEADS, EXPERTS, TOP_K = 128, 128, 4, 4, 8, 2
AUX_LOSS = (
    0.002  # Mixtral's load-balancing loss, weak (the probe in issue 10: 0.02 blurred the languages)
)
SEQ_LEN, BATCH, LR, STEPS, WARMUP, SEED = 64, 30, 3e-3, 1500, 100, 0
TRAIN_BYTES = 400_000  # per language
HELDOUT_POOL = 160  # texts per language withheld from training
# held-out sentences per language shipped: in the game, evaluating lesions
GAME_SENTENCES, EVAL_SENTENCES = (
    4,
    16,
)
GAME_BYTES, EVAL_BYTES = 32, 48  # bytes of a sentence in the game, in lesion evaluations


def config(**overrides: Any):
    """The ``MixtralConfig`` of the bundled model."""
    from transformers import MixtralConfig

    values = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        num_local_experts=EXPERTS,
        num_experts_per_tok=TOP_K,
        max_position_embeddings=SEQ_LEN,
        router_aux_loss_coef=AUX_LOSS,
        tie_word_embeddings=False,
        bos_token_id=BOS,
        eos_token_id=None,
        pad_token_id=None,
    )
    return MixtralConfig(**(values | overrides))


def build() -> nn.Module:
    """An untrained model with the bundled architecture, in eval mode."""
    from transformers import MixtralForCausalLM

    return MixtralForCausalLM(config()).eval()


def encode(text: str, max_bytes: int | None = None) -> torch.Tensor:
    """Token ids ``[1 + n_bytes]``: BOS then the UTF-8 bytes of ``text`` (cut to ``max_bytes``)."""
    data = text.encode("utf-8")[:max_bytes]
    return torch.tensor([BOS, *data], dtype=torch.long)


def decode(ids: torch.Tensor) -> str:
    """The text of an id sequence ``[T]`` (BOS dropped; a letter cut in half shows as U+FFFD)."""
    return bytes(int(i) for i in ids if int(i) != BOS).decode("utf-8", errors="replace")


def decode_token(token: int) -> str:
    """A readable label of one token: the byte's character, its hex for bytes inside a multi-byte
    letter."""
    if token == BOS:
        return "<s>"
    if token < 0x80:
        return {10: "\\n", 32: "␣"}.get(token, chr(token))
    return f"x{token:02X}"


def token_labels(ids: torch.Tensor) -> list[str]:
    """Readable labels of a 1-D id sequence: each UTF-8 letter shown on its last byte, its other
    bytes as '·'."""
    tokens = [int(i) for i in ids]
    labels = [decode_token(i) for i in tokens]
    start = None
    for pos, token in enumerate(tokens):
        if token == BOS or token < 0x80:
            start = None
            continue
        if token >= 0xC0:  # a UTF-8 lead byte opens a letter
            start = pos
        if start is not None:
            chunk = bytes(tokens[start : pos + 1])
            try:
                letter = chunk.decode("utf-8")
            except UnicodeDecodeError:
                continue
            labels[start:pos] = ["·"] * (pos - start)
            labels[pos] = letter
            start = None
    return labels


def heldout_path(name: str | None = None):
    return ASSETS / f"{name or NAME}-heldout.json"


@cache
def heldout() -> dict[str, list[str]]:
    """The shipped held-out sentences: ``{language: [sentence, ...]}`` (never seen in training)."""
    path = heldout_path()
    if not path.exists():
        raise MSAInputError(
            f"{path} is missing; train the model with `python -m msa_core.zoo.train {NAME}`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def sentence_batch(
    sentences: dict[str, list[str]], n_bytes: int, per_language: int | None = None, start: int = 0
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """HF inputs ``{"input_ids": [B, 1 + n_bytes]}`` and each row's language index ``[B]``."""
    rows, languages = [], []
    for index, language in enumerate(LANGUAGES):
        chosen = sentences[language][start : None if per_language is None else start + per_language]
        rows += [encode(text, n_bytes) for text in chosen]
        languages += [index] * len(chosen)
    return {"input_ids": torch.stack(rows)}, torch.tensor(languages)


def game_inputs() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The game's default inputs: the first ``GAME_SENTENCES`` held-out sentences of each
    language."""
    return sentence_batch(heldout(), GAME_BYTES, GAME_SENTENCES)


def eval_inputs() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Held-out sentences not in the game (for lesion tests that must not reuse the game's
    inputs)."""
    return sentence_batch(heldout(), EVAL_BYTES, start=GAME_SENTENCES)


def prompts() -> list[torch.Tensor]:
    """One prompt per language for greedy continuations: BOS + the first bytes of its first
    evaluation sentence."""
    sentences = heldout()
    return [encode(sentences[language][GAME_SENTENCES], PROMPT_BYTES) for language in LANGUAGES]


def language_weights(languages: torch.Tensor, n_languages: int = len(LANGUAGES)) -> torch.Tensor:
    """``[B, L]``: row b has B / (sentences of its language) in its language's column, so a batch
    mean is a per-language mean.
    """
    onehot = nn.functional.one_hot(languages, n_languages).double()
    counts = onehot.sum(0)
    if (counts == 0).any():
        raise MSAInputError("every language needs at least one sentence in the inputs")
    return (onehot * len(languages) / counts).float()


def language_logprob_fn(input_ids: torch.Tensor, languages: torch.Tensor) -> CustomOutput:
    """The output ``[C * B, L]`` for ``input_ids [B, T]`` of sentences in ``languages [B]``: its
    mean over B is each language's mean log-prob of the true next bytes (``target_logprob`` averaged
    per sentence)."""
    weights = language_weights(languages)
    next_bytes = make_output("target_logprob", {"input_ids": input_ids}, None)

    def output(raw: Any, copies: int) -> torch.Tensor:
        per_sentence = next_bytes(raw, copies).mean(-1)  # [C * B]
        return per_sentence[:, None] * weights.to(per_sentence.device).repeat(copies, 1)

    return CustomOutput(output)


def language_logprob_output(
    inputs: dict[str, torch.Tensor], labels: torch.Tensor | None
) -> CustomOutput:
    """The ``language_logprob`` output of a game on the card's own held-out sentences (whose
    languages are known)."""
    default, languages = game_inputs()
    if not isinstance(inputs, dict) or not torch.equal(
        inputs.get("input_ids", default["input_ids"][:0]).cpu(), default["input_ids"]
    ):
        raise MSAInputError(
            "output='language_logprob' is defined on the model's own held-out sentences, whose "
            "languages are known; use output='target_logprob' for other inputs"
        )
    return language_logprob_fn(inputs["input_ids"], languages)


# ---------------------------------------------------- training (needs the Debian fortunes packages)


def corpora(
    seed: int = SEED,
) -> tuple[dict[str, list[str]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Held-out sentences and, per language, (training bytes as uint8, offsets where a text
    starts)."""
    from msa_core.zoo.text import split_language

    held, train = {}, {}
    for language in LANGUAGES:
        sentences, corpus = split_language(language, HELDOUT_POOL, TRAIN_BYTES, seed)
        held[language] = [s for s in sentences if len(s.encode("utf-8")) >= EVAL_BYTES][
            : GAME_SENTENCES + EVAL_SENTENCES
        ]
        data = np.frombuffer(corpus, np.uint8)
        starts = np.flatnonzero(data[:-SEQ_LEN] == 10) + 1  # a text starts after each newline
        train[language] = (data, np.concatenate([[0], starts]))
    return held, train


def training_batch(
    train: dict[str, tuple[np.ndarray, np.ndarray]], rng: np.random.Generator
) -> torch.Tensor:
    """``[BATCH, SEQ_LEN]`` ids: BOS + bytes from a random text start, languages in equal shares."""
    rows = []
    for row in range(BATCH):
        data, starts = train[LANGUAGES[row % len(LANGUAGES)]]
        start = starts[rng.integers(len(starts))]
        rows.append(np.concatenate([[BOS], data[start : start + SEQ_LEN - 1]]))
    return torch.tensor(np.stack(rows), dtype=torch.long)


def train(steps: int = STEPS, seed: int = SEED, log_every: int = 100) -> nn.Module:
    """Train deterministically (one thread, fixed seeds; AdamW, warmup then cosine); writes the
    held-out file."""
    held, corpus = corpora(seed)
    path = heldout_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(held, ensure_ascii=False, indent=0), encoding="utf-8")
    heldout.cache_clear()
    torch.manual_seed(seed)
    model = build().train()
    config: Any = model.config
    config.output_router_logits = True
    optimiser = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min(1.0, (s + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
    )
    rng, began = np.random.default_rng(seed), time.time()
    for step in range(steps):
        ids = training_batch(corpus, rng)
        out = model(input_ids=ids, labels=ids)
        optimiser.zero_grad()
        out.loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(
                f"  step {step:5d}  loss {out.loss.item():.3f}  aux {out.aux_loss.item():.3f}  "
                f"{time.time() - began:.0f}s",
                flush=True,
            )
    config.output_router_logits = False
    return model.eval()


def cards() -> list[ModelCard]:
    """The bundled multilingual MoE LM."""
    return [
        ModelCard(
            name=NAME,
            family="moe",
            description=(
                "byte-level Mixtral (4 layers x 8 experts, top-2, hidden 128) on Debian fortunes "
                "in English, Polish, Russian, Bulgarian and Chinese"
            ),
            granularities={
                "experts (all layers)": (Experts("model.layers.*.mlp"),),
                **{
                    f"experts (layer {i})": (Experts(f"model.layers.{i}.mlp"),)
                    for i in range(LAYERS)
                },
                "heads": (Heads("model.layers.*.self_attn"),),
            },
            outputs=("target_logprob", "language_logprob"),
            build=build,
            data=lambda: (game_inputs()[0], None),
            train=train,
            output_fns={"language_logprob": language_logprob_output},
            facts={
                "languages": list(LANGUAGES),
                "layers": LAYERS,
                "experts": EXPERTS,
                "top_k": TOP_K,
                "hidden": HIDDEN,
                "aux_loss": AUX_LOSS,
                "steps": STEPS,
                "seed": SEED,
                "data": "Debian fortunes, fortunes-pl, -ru, -bg, -zh",
            },
        )
    ]
