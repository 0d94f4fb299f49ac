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

from cli_runner import run_cli  # noqa: E402
from fetched import require_fetched  # noqa: E402
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
    """Special tokens and the letters a-z (each letter one token; longer words are [UNK])."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)]
    return transformers.BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})


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


def minilm():
    require_fetched("minilm")
    from msa_core.zoo import load_model

    return load_model("all-minilm-l6-v2")


@pytest.mark.pretrained
def test_fetched_minilm_scores_paraphrases_above_unrelated_pairs():
    from msa_core.estimators import shapley_modes
    from msa_core.zoo import scored_on

    loaded = minilm()
    game = loaded.game("attention blocks")
    assert game.n_players == 6 and loaded.game("heads").n_players == 6 * 12
    intact = game(np.ones((1, 6), bool))[0].numpy()
    groups = np.array(loaded.card.facts["groups"])
    unrelated = np.array([pair.group == "unrelated" for pair in encoder.load_pairs("topics").pairs])
    assert "unrelated" in groups
    assert intact[~unrelated].min() > intact[unrelated].max()  # a real sentence encoder
    with pytest.raises(MSAInputError, match="no masked-LM head"):  # its package ships BertModel
        scored_on(loaded, "facts")
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


MASKED_ROWS = (
    '{"text": "a b [MASK] d", "answer": "c", "group": "letters"}\n'
    '{"text": "x [MASK] z", "answer": "y", "group": "letters"}\n'
    '{"text": "[MASK] o g", "answer": "d", "group": "words"}\n'
)


def masked_lm_folder(tmp_path):
    """A tiny random ``BertForMaskedLM`` checkpoint folder (head tied to the word embeddings)."""
    folder = tmp_path / "tiny-bert-mlm"
    folder.mkdir()
    tokenizer = tiny_tokenizer(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        intermediate_size=FFN,
        max_position_embeddings=32,
    )
    mlm = transformers.BertForMaskedLM(config).eval()
    with torch.no_grad():
        for name, parameter in mlm.named_parameters():
            if "norm" not in name.lower():
                parameter.normal_(0, 0.3)
    mlm.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


def test_a_masked_lm_scores_each_answer_at_its_mask_and_lesions_equal_weight_edits(tmp_path):
    from msa_core.zoo import load_model, scored_on
    from msa_core.zoo.masked import MASKED_OUTPUT

    folder, tokenizer = masked_lm_folder(tmp_path)
    (tmp_path / "masked.jsonl").write_text(MASKED_ROWS, encoding="utf-8")
    loaded = load_model(f"hf:{folder}")
    assert loaded.model.masked_lm and loaded.card.facts["architecture"] == "BertForMaskedLM"
    assert loaded.card.outputs[0] == "pair_similarity"  # default inputs: the bundled pairs
    scored = scored_on(loaded, str(tmp_path / "masked.jsonl"))
    assert scored.card.outputs == (MASKED_OUTPUT,)
    assert scored.card.facts["row_groups"] == ["letters", "letters", "words"]
    from msa_core.analysis.samples import input_table

    assert input_table(scored)[2] == {
        "index": "2",
        "group": "words",
        "input": "Sentence: [MASK] o g\nAnswer: d",
    }
    game = scored.game("heads")
    rows = np.ones((2, game.n_players), bool)
    rows[1, [1, 6]] = False  # L0.H1 and L1.H2
    values = game(rows)
    assert values.shape == (2, 3)
    reference = transformers.BertForMaskedLM.from_pretrained(folder).eval()
    texts = ["a b [MASK] d", "x [MASK] z", "[MASK] o g"]
    answers = tokenizer.convert_tokens_to_ids(["c", "y", "d"])

    def expected(model):
        out = []
        for text, answer in zip(texts, answers, strict=True):
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            at = int((ids[0] == tokenizer.mask_token_id).nonzero()[0, 0])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, at]
            out.append(torch.log_softmax(logits.float(), -1)[answer])
        return torch.stack(out)

    torch.testing.assert_close(values[0], expected(reference), atol=1e-5, rtol=1e-5)
    head_size = HIDDEN // N_HEADS
    with torch.no_grad():  # the weight edit: zero the heads' input columns of the out-projection
        for layer, head in ((0, 1), (1, 2)):
            dense = reference.bert.encoder.layer[layer].attention.output.dense
            dense.weight[:, head * head_size : (head + 1) * head_size] = 0
    torch.testing.assert_close(values[1], expected(reference), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(values[0], values[1], atol=1e-4)


def test_masked_sentences_are_refused_without_a_head_or_with_bad_rows(tmp_path):
    from msa_core.zoo import load_model, scored_on
    from msa_core.zoo.masked import load_masked

    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    tiny_tokenizer(folder).save_pretrained(folder)
    build("bert").encoder.save_pretrained(folder, safe_serialization=True)
    with pytest.raises(MSAInputError, match="no masked-LM head .*BertModel.*ForMaskedLM"):
        scored_on(load_model(f"hf:{folder}"), "facts")
    with pytest.raises(MSAInputError, match="needs sentence pairs"):
        load_model(f"hf:{folder}").game("heads", "pair_similarity", inputs={"x": torch.ones(2)})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no mask here", "answer": "x"}\n', encoding="utf-8")
    with pytest.raises(MSAInputError, match="bad.jsonl line 1: text must .* one \\[MASK\\]"):
        load_masked(bad)
    mlm_folder, _ = masked_lm_folder(tmp_path)
    answers = tmp_path / "answers.jsonl"
    for answer, problem in (("b c", "is 2 tokens"), ("bb", "is not in the vocabulary")):
        answers.write_text(f'{{"text": "a [MASK]", "answer": "{answer}"}}\n', encoding="utf-8")
        with pytest.raises(
            MSAInputError, match=f"answers.jsonl row 1: the answer '{answer}' {problem}"
        ):
            scored_on(load_model(f"hf:{mlm_folder}"), str(answers))
