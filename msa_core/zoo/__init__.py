"""Bundled models: ``list_models()`` and ``load_model(name)``.

Each model is trained by a deterministic script (``python -m msa_core.zoo.train NAME``) on data a
package ships, and its weights sit in ``assets/`` as safetensors. A loaded model carries its default
inputs, labels, unit granularities and outputs, and builds a ``ModelGame``. Each family module
(``mlp``, ``gan``, ``moe``) contributes its cards through ``cards()``.

>>> "mlp-digits-h32-none-s0" in [card.name for card in list_models()]
True
>>> load_model("mlp-digits-h32-none-s0").game("hidden neurons").n_players
32
"""

from __future__ import annotations

from functools import cache

from msa_core.errors import MSAInputError
from msa_core.zoo import gan, mlp, moe
from msa_core.zoo.card import LoadedModel, ModelCard
from msa_core.zoo.weights import load_weights, tensor_digest

CARDS: dict[str, ModelCard] = {
    card.name: card for family in (mlp, gan, moe) for card in family.cards()
}

__all__ = [
    "CARDS",
    "HF_PREFIX",
    "LoadedModel",
    "ModelCard",
    "get_card",
    "list_models",
    "load_model",
    "scored_on",
]


def list_models(bundled_only: bool = True) -> list[ModelCard]:
    """Cards of the models whose weights ship in ``assets/`` (or of every known model) and of the
    real LLMs fetched into the model store (``python -m msa_core.zoo.fetch``), sorted by name."""
    cards = [card for card in CARDS.values() if card.bundled or not bundled_only] + fetched_cards()
    return sorted(cards, key=lambda c: c.name)


def fetched_cards() -> list[ModelCard]:
    """Cards of the fetched LLMs in the model store (``$MSA_CACHE_DIR/models``); none before a
    fetch."""
    from msa_core.zoo.fetch import fetched

    return [_fetched_card(item.name, str(folder)) for item, folder in fetched()]


@cache
def _fetched_card(name: str, folder: str) -> ModelCard:
    from msa_core.zoo.fetch import FETCHABLE

    item = next(item for item in FETCHABLE.values() if item.name == name)
    facts = {"task": item.task, "source": item.package}
    if item.kind == "encoder":
        from msa_core.zoo.encoder import encoder_card

        return encoder_card(folder, name, item.description, facts)
    if item.kind == "vision":
        from msa_core.zoo.vision import vision_card

        return vision_card(folder, name, item.description, facts)
    from msa_core.zoo.hf import checkpoint_card  # transformers: only once a model is fetched

    return checkpoint_card(folder, name, item.description, facts)


def get_card(name: str) -> ModelCard:
    """The card of ``name``, or a clear error listing the bundled models (told before any
    fetched model's card is read, which imports transformers)."""
    from msa_core.zoo.fetch import fetched

    folder = next((str(path) for item, path in fetched() if item.name == name), None)
    if name not in CARDS and folder is not None:
        return _fetched_card(name, folder)
    if name not in CARDS:
        from msa_core.zoo.fetch import FETCHABLE

        hint = next(
            (
                f"; fetch it first: python -m msa_core.zoo.fetch {item.key}"
                for item in FETCHABLE.values()
                if item.name == name
            ),
            "",
        )
        if hint:
            raise MSAInputError(f"model {name!r} is not in the model store{hint}")
        known = sorted(
            [*(c.name for c in CARDS.values() if c.bundled), *(i.name for i, _ in fetched())]
        )
        raise MSAInputError(
            f"unknown model {name!r}; bundled: {', '.join(known)}; "
            f"or a local Hugging Face checkpoint folder as '{HF_PREFIX}/path/to/folder'"
        )
    return CARDS[name]


HF_PREFIX = "hf:"  # load_model("hf:/path/to/folder"): a local Hugging Face checkpoint folder


@cache
def load_model(name: str) -> LoadedModel:
    """Load a bundled model, or a local Hugging Face checkpoint named ``hf:<folder>`` (cached per
    process).

    Checkpoints go through the run store like bundled models: their identity is the hash of their
    weights.
    """
    if name.startswith(HF_PREFIX):
        from msa_core.zoo.encoder import is_encoder_folder, load_encoder
        from msa_core.zoo.vision import is_image_folder, load_image_checkpoint

        if is_encoder_folder(name[len(HF_PREFIX) :]):
            return load_encoder(name[len(HF_PREFIX) :])
        if is_image_folder(name[len(HF_PREFIX) :]):
            return load_image_checkpoint(name[len(HF_PREFIX) :])
        from msa_core.zoo.hf import load_checkpoint  # imports transformers: only when asked for

        return load_checkpoint(name[len(HF_PREFIX) :])
    card = get_card(name)
    if card.checkpoint is not None and card.family == "encoder":
        from msa_core.zoo.encoder import load_encoder

        return load_encoder(card.checkpoint, name=name, facts=card.facts)
    if card.checkpoint is not None and card.family == "vision":
        from msa_core.zoo.vision import load_vision

        return load_vision(card.checkpoint, name=name, facts=card.facts)
    if card.checkpoint is not None:
        from msa_core.zoo.hf import load_checkpoint

        return load_checkpoint(
            card.checkpoint, name=name, task=card.facts["task"], facts=card.facts
        )
    if not card.bundled:
        raise MSAInputError(
            f"model {name!r} has no weights in assets/; train them with "
            f"`python -m msa_core.zoo.train {name}`"
        )
    model = load_weights(card.build(), name)
    inputs, labels = card.data()
    return LoadedModel(card, model, inputs, labels, tensor_digest(model.state_dict()))


def scored_on(loaded: LoadedModel, task: str) -> LoadedModel:
    """``loaded`` with other inputs: for a language model a task (``msa_core.tasks.with_task``),
    for a sentence encoder a pairs file (``zoo.encoder.with_pairs``) or masked sentences
    (``zoo.masked.with_masked``, told apart by ``is_masked_source``), for an image classifier a
    folder of images with ``labels.csv`` (``zoo.vision.with_images``)."""
    if loaded.card.family == "encoder":
        from msa_core.zoo.encoder import with_pairs
        from msa_core.zoo.masked import is_masked_source, with_masked

        return with_masked(loaded, task) if is_masked_source(task) else with_pairs(loaded, task)
    if loaded.card.family == "vision":
        from msa_core.zoo.vision import with_images

        return with_images(loaded, task)
    from msa_core.tasks import with_task

    return with_task(loaded, task)
