"""Tasks: reading and validating task files (errors name the line), padding that leaves scores as
they are one by one, the two per-example values, group means, and the task in a run's identity."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from msa_core.errors import MSAInputError  # noqa: E402
from msa_core.tasks import (  # noqa: E402
    bundled_tasks,
    encode_task,
    group_means,
    load_task,
    parse_task,
    task_from_rows,
    task_values,
    with_task,
)

WORDS = [
    "[UNK]",
    "[PAD]",
    "The",
    "capital",
    "of",
    "France",
    "Germany",
    "is",
    "Paris",
    "Berlin",
    "2",
    "+",
    "3",
    "=",
    "5",
    "four",
    "five",
    "six",
    "a",
    "b",
    "c",
    "d",
]
ROWS = [
    {"prompt": "The capital of France is", "target": " Paris", "group": "capital"},
    {"prompt": "2 + 3 =", "target": " 5", "group": "addition"},
    {"prompt": "The capital of Germany is", "target": " Berlin is", "group": "capital"},
    {"prompt": "a", "target": " b c d", "group": "letters"},
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def word_tokenizer():
    """A word-level tokenizer over ``WORDS`` (whitespace split; a blank text is no tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]"
    )


def tiny_llama() -> transformers.LlamaForCausalLM:
    """A random 2-layer Llama over the word tokenizer's vocabulary (seed 0), in eval mode."""
    config = transformers.LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random Llama checkpoint folder with the word tokenizer, and the model."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_llama()
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder, model


def test_jsonl_and_csv_give_one_task_with_one_digest(tmp_path):
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(task_from_rows(ROWS).to_jsonl() + "\n", encoding="utf-8")
    csv = tmp_path / "t.csv"
    csv.write_text(
        "prompt,target,group\n"
        + "".join(f'"{r["prompt"]}","{r["target"]}",{r["group"]}\n' for r in ROWS)
    )
    a, b = load_task(jsonl), load_task(csv)
    assert a.examples[1].prompt == "2 + 3 =" and a.groups == ("capital", "addition", "letters")
    assert a.digest() == b.digest() == load_task(ROWS).digest()
    assert a.digest() != task_from_rows(ROWS[:3]).digest()
    np.testing.assert_array_equal(a.group_index(), [0, 1, 0, 2])
    assert task_from_rows([{"prompt": "x", "target": " y"}]).groups == ("all",)


@pytest.mark.parametrize(
    "text, kind, message",
    [
        (
            '{"prompt": "a", "target": " b"}\n{"prompt": "a"}\n',
            "jsonl",
            r"t line 2: missing field 'target'",
        ),
        (
            '{"prompt": "a", "target": " b"}\n\n{"prompt": "a", "target": ""}\n',
            "jsonl",
            r"t line 3: empty target",
        ),
        ('{"prompt": "a", "target": " b"}\nnot json\n', "jsonl", r"t line 2: not valid JSON"),
        (
            '{"prompt": "a", "target": " b", "label": 1}\n',
            "jsonl",
            r"t line 1: unknown field\(s\) \['label'\]",
        ),
        ('{"prompt": "", "target": " b"}\n', "jsonl", r"t line 1: empty prompt"),
        ("", "jsonl", "no examples"),
        ("question,answer\nx,y\n", "csv", "line 1: the CSV header must name"),
        ("prompt,target\na,b\nc,\n", "csv", r"t line 3: empty target"),
        ("prompt,target\na,b,c\n", "csv", r"t line 2: more cells"),
    ],
)
def test_bad_task_text_names_the_line(text, kind, message):
    with pytest.raises(MSAInputError, match=message):
        parse_task(text, "t", kind)


def test_tokenizer_problems_name_the_line():
    tokenizer = word_tokenizer()
    with pytest.raises(MSAInputError, match=r"t line 2: the target ' ' tokenises to nothing"):
        encode_task(
            parse_task(
                '{"prompt": "a", "target": " b"}\n{"prompt": "a", "target": " "}\n', "t", "jsonl"
            ),
            tokenizer,
        )
    with pytest.raises(
        MSAInputError, match=r"t row 1: the prompt has more than 4 tokens; at most 4"
    ):
        encode_task(task_from_rows(ROWS[:1], "t"), tokenizer, max_prompt_tokens=4)
    with pytest.raises(MSAInputError, match="unknown padding"):
        encode_task(task_from_rows(ROWS), tokenizer, padding="middle")


def test_unknown_sources_are_clear_errors(tmp_path):
    with pytest.raises(MSAInputError, match="does not exist"):
        load_task(tmp_path / "missing.jsonl")
    with pytest.raises(MSAInputError, match="neither a .jsonl/.csv file nor a bundled task set"):
        load_task("no-such-task")
    assert {"capitals", "addition", "languages", "smollm2-study"} <= set(bundled_tasks())
    assert load_task("capitals").examples[0].target == " Paris"


@pytest.mark.parametrize("padding", ["right", "left"])
def test_batched_scores_equal_one_by_one_scores(checkpoint, padding):
    _, model = checkpoint
    tokenizer, task = word_tokenizer(), task_from_rows(ROWS)
    encoded = encode_task(task, tokenizer, padding)
    assert (
        encoded.inputs["attention_mask"].sum().item() < encoded.inputs["input_ids"].numel()
    )  # there is padding
    with torch.no_grad():
        batched = {
            out: task_values(model(**encoded.inputs), encoded, out)
            for out in ("task_logprob", "task_accuracy")
        }
        for i in range(len(ROWS)):
            alone = encode_task(task_from_rows(ROWS[i : i + 1]), tokenizer, padding)
            assert alone.inputs["attention_mask"].all()
            raw = model(**alone.inputs)
            torch.testing.assert_close(
                task_values(raw, alone, "task_logprob")[0],
                batched["task_logprob"][i],
                atol=1e-4,
                rtol=1e-5,
            )
            assert task_values(raw, alone, "task_accuracy")[0] == batched["task_accuracy"][i]
            # against first principles: the summed log-softmax of each target token after its prefix
            ids = alone.inputs["input_ids"][0]
            n = int(alone.scored[0].sum())
            logprobs = raw.logits[0, -n - 1 : -1].log_softmax(-1)
            expected = logprobs.gather(-1, ids[-n:, None]).sum()
            torch.testing.assert_close(batched["task_logprob"][i], expected, atol=1e-4, rtol=1e-5)
            greedy = bool((logprobs.argmax(-1) == ids[-n:]).all())
            assert batched["task_accuracy"][i] == float(greedy)


def test_group_means_average_the_examples_of_each_group():
    values = np.arange(12.0).reshape(3, 4)  # [units, examples]
    np.testing.assert_allclose(
        group_means(values, np.array([0, 1, 0, 2]), 3), [[1, 1, 3], [5, 5, 7], [9, 9, 11]]
    )


def test_a_task_game_and_its_identity_in_the_store(checkpoint, tmp_path, monkeypatch):
    from msa_core.runs.request import RunRequest
    from msa_core.zoo.hf import load_checkpoint

    folder, _ = checkpoint
    loaded = load_checkpoint(folder)
    tasked = with_task(loaded, ROWS)
    assert tasked.card.outputs == ("task_logprob", "task_accuracy")
    game = tasked.game("heads")
    assert game.output_shape == (len(ROWS),)
    values = game(np.array([[True] * 8, [False] * 8]))
    assert values.shape == (2, len(ROWS)) and not torch.equal(values[0], values[1])
    with pytest.raises(MSAInputError, match="has no tokenizer"):
        with_task(dataclasses.replace(loaded, tokenizer=None), ROWS)

    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    a.write_text(task_from_rows(ROWS).to_jsonl())
    b.write_text(task_from_rows(ROWS).to_jsonl())
    c.write_text(task_from_rows(ROWS[:3]).to_jsonl())
    prints = [
        RunRequest(model=f"hf:{folder}", units="heads", task=str(path)).fingerprint(
            with_task(loaded, path)
        )
        for path in (a, b, c)
    ]
    assert prints[0] == prints[1] != prints[2]  # the content counts, not the file's name
    assert RunRequest(model=f"hf:{folder}").fingerprint(loaded) not in prints


def test_cli_run_with_a_task_file_stores_the_task_with_the_result(checkpoint, tmp_path, capsys):
    from msa_core.cli import main
    from msa_core.runs.store import RunStore

    folder, _ = checkpoint
    path = tmp_path / "five.jsonl"
    path.write_text(task_from_rows(ROWS).to_jsonl())
    argv = [
        "run",
        "--model",
        f"hf:{folder}",
        "--units",
        "attention blocks",
        "--task",
        str(path),
        "--method",
        "exact",
        "--cache-dir",
        str(tmp_path / "store"),
        "--quiet",
    ]
    assert main(argv) == 0
    (entry,) = RunStore(tmp_path / "store").list()
    assert entry["request"]["task"] == str(path) and entry["request"]["output"] == "task_logprob"
    result = RunStore(tmp_path / "store").get(entry["fingerprint"])
    assert result.output_shape == (len(ROWS),) and result.efficiency_gap() < 1e-4
    assert result.meta["task"]["groups"] == ["capital", "addition", "letters"]
    assert result.meta["task"]["digest"] == task_from_rows(ROWS).digest()
    path.write_text('{"prompt": "a"}\n')
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert (
        exit_info.value.code == 2
        and "five.jsonl line 1: missing field 'target'" in capsys.readouterr().err
    )


def test_a_run_of_a_game_with_one_coalition_per_pass_reports_progress_as_it_goes(checkpoint):
    from msa_core import shapley_modes
    from msa_core.lesion import ModelGame
    from msa_core.tasks import task_output_fn
    from msa_core.units import Heads

    _, model = checkpoint
    encoded = encode_task(task_from_rows(ROWS), word_tokenizer())
    game = ModelGame(
        model,
        encoded.inputs,
        Heads("model.layers.*.self_attn"),
        output=task_output_fn(encoded, "task_logprob"),
        coalitions_per_pass=1,
    )
    calls = []
    result = shapley_modes(
        game,
        method="permutation",
        n_permutations=8,
        seed=0,
        progress=lambda done, total: calls.append(done),
    )
    assert len(calls) >= 4 and calls[-1] == result.n_evaluations  # not one report at the very end


def test_an_overlong_line_or_file_is_refused_before_it_is_tokenised(tmp_path):
    """Today a 50 MB task line is tokenised whole (5.8 GB resident, then abort): refused by its
    length in characters; a file over the cap is refused by its size, unread."""
    from msa_core.tasks import MAX_TASK_CHARS, MAX_TEXT_CHARS

    line = json.dumps({"prompt": "a " * MAX_TEXT_CHARS, "target": " b"})
    with pytest.raises(MSAInputError, match=r"big line 1: the prompt has 16,384 characters; at"):
        parse_task(line, "big", "jsonl")
    with pytest.raises(MSAInputError, match=r"t row 2: the target has 8,193 characters"):
        task_from_rows([ROWS[0], {"prompt": "a", "target": "b" * (MAX_TEXT_CHARS + 1)}], "t")
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_TASK_CHARS + 1)  # sparse: nothing written, nothing read
    with pytest.raises(MSAInputError, match=r"huge.jsonl is 4,194,305 characters long; at most"):
        load_task(huge)
    with pytest.raises(MSAInputError, match="characters long"):
        parse_task("x" * (MAX_TASK_CHARS + 1), "pasted rows", "jsonl")
    cell = "a" * 200_000  # over the csv module's field limit
    with pytest.raises(MSAInputError, match=r"wide.csv after line 1: not valid CSV \(field larger"):
        parse_task(f"prompt,target\n{cell},b\n", "wide.csv", "csv")


def test_tokenising_stops_one_token_past_the_limit():
    tokenizer = word_tokenizer()
    lengths = []

    def counting(text, **kwargs):
        ids = tokenizer(text, **kwargs)
        lengths.append(len(ids["input_ids"]))
        return ids

    task = task_from_rows([{"prompt": "a " * 4000, "target": " b"}], "t")
    with pytest.raises(MSAInputError, match="the prompt has more than 256 tokens; at most 256"):
        encode_task(task, counting)
    assert max(lengths) == 257
