"""Tasks: what a language model is scored on. A task is a list of examples ``prompt``, ``target``
(the continuation to score, one or more tokens) and an optional ``group`` (e.g. "capital").

Sources: a JSONL file (one object per line), a CSV file (a header row naming the columns), a list
of dicts, or the name of a bundled task set (``assets/tasks/<name>.jsonl``). Per example the values
are the target's log-probability given the prompt, summed over its tokens (``task_logprob``), and
whether greedy decoding produces the target (``task_accuracy``: 1.0 when the argmax at every target
position is the target token, which is exactly when greedy decoding would reproduce it).

Tokenisation: the prompt with the tokenizer's special tokens, then the target on its own without
them (start a target with a space where a word follows, e.g. " Paris"). Rows of different lengths
are padded (right by default; left with ``position_ids`` from the mask) with an attention mask, so
that a batch scores every example as it would score alone.

>>> task = task_from_rows([{"prompt": "2 + 2 =", "target": " 4", "group": "addition"}])
>>> task.groups, len(task.digest())
(('addition',), 64)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from msa_core.errors import MSAInputError
from msa_core.lesion.outputs import ColumnScores
from msa_core.paths import ASSETS

if TYPE_CHECKING:  # the zoo imports this module; its classes are only named here
    from msa_core.zoo.card import LoadedModel

TASKS_DIR = ASSETS / "tasks"
FIELDS = ("prompt", "target", "group")
DEFAULT_GROUP = "all"
MAX_PROMPT_TOKENS = 256  # longer prompts are refused: every coalition pays for every token
MAX_EXAMPLES = 2000
MAX_TEXT_CHARS = 32 * MAX_PROMPT_TOKENS  # a prompt or target, refused before it is tokenised
MAX_TASK_CHARS = 4 << 20  # a whole task file, paste or upload (characters; bytes on disk)
PADDINGS = ("right", "left")
TASK_OUTPUTS = ("task_logprob", "task_accuracy")


@dataclass(frozen=True)
class Example:
    """One scored continuation; ``where`` names its source line for error messages."""

    prompt: str
    target: str
    group: str = DEFAULT_GROUP
    where: str = ""


@dataclass(frozen=True)
class Task:
    """A named list of examples."""

    name: str
    examples: tuple[Example, ...]

    @property
    def groups(self) -> tuple[str, ...]:
        """Group names in order of first appearance."""
        return tuple(dict.fromkeys(example.group for example in self.examples))

    def group_index(self) -> np.ndarray:
        """int ``[B]``: each example's position in ``groups``."""
        order = {group: i for i, group in enumerate(self.groups)}
        return np.array([order[example.group] for example in self.examples], dtype=np.int64)

    def digest(self) -> str:
        """sha256 of the examples' content (prompt, target, group), whatever file they came from."""
        rows = [[example.prompt, example.target, example.group] for example in self.examples]
        return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()

    def to_jsonl(self) -> str:
        """The task as JSONL text (one object per example)."""
        return "".join(
            json.dumps(
                {"prompt": e.prompt, "target": e.target, "group": e.group}, ensure_ascii=False
            )
            + "\n"
            for e in self.examples
        )


def _example(row: Any, where: str) -> Example:
    if not isinstance(row, dict):
        raise MSAInputError(
            f"{where}: expected an object with fields prompt, target (and optional group); "
            f"got {type(row).__name__}"
        )
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise MSAInputError(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(FIELDS)}")
    for field_name in ("prompt", "target"):
        if field_name not in row or row[field_name] is None:
            raise MSAInputError(
                f"{where}: missing field {field_name!r}; every example needs prompt and target"
            )
        if not isinstance(row[field_name], str):
            raise MSAInputError(
                f"{where}: {field_name} must be text; got {type(row[field_name]).__name__}"
            )
    for field_name in ("prompt", "target"):
        if len(row[field_name]) > MAX_TEXT_CHARS:
            raise MSAInputError(
                f"{where}: the {field_name} has {len(row[field_name]):,} characters; at most "
                f"{MAX_TEXT_CHARS:,} are allowed (a prompt may have at most {MAX_PROMPT_TOKENS} "
                "tokens)"
            )
    if not row["prompt"].strip():
        raise MSAInputError(f"{where}: empty prompt; the model needs some text to continue")
    if row["target"] == "":
        raise MSAInputError(f'{where}: empty target; give the continuation to score, e.g. " Paris"')
    group = row.get("group") or DEFAULT_GROUP
    if not isinstance(group, str):
        raise MSAInputError(f"{where}: group must be text; got {type(group).__name__}")
    return Example(row["prompt"], row["target"], group.strip() or DEFAULT_GROUP, where)


def task_from_rows(
    rows: Sequence[dict[str, Any]], name: str = "rows", where: Callable[[int], str] | None = None
) -> Task:
    """A task from dicts with ``prompt``, ``target`` and optional ``group``.

    Args:
        rows: the examples; ``where(i)`` names row i in errors (default "row i", from 1).
    Raises:
        MSAInputError: no rows, too many, or a row with a missing/empty/non-text field.
    """
    where = where or (lambda i: f"{name} row {i + 1}")
    if not rows:
        raise MSAInputError(f"task {name} has no examples; give at least one prompt/target pair")
    if len(rows) > MAX_EXAMPLES:
        raise MSAInputError(
            f"task {name} has {len(rows)} examples; at most {MAX_EXAMPLES} are allowed "
            "(every coalition evaluates every example)"
        )
    return Task(name, tuple(_example(row, where(i)) for i, row in enumerate(rows)))


def check_task_size(size: int, name: str) -> None:
    """Raise ``MSAInputError`` when a task's text (``size`` characters or bytes) is over
    ``MAX_TASK_CHARS``, before it is read or parsed."""
    if size > MAX_TASK_CHARS:
        raise MSAInputError(
            f"task {name} is {size:,} characters long; at most {MAX_TASK_CHARS:,} are allowed "
            f"({MAX_EXAMPLES} examples of short prompts fit in far less)"
        )


def parse_task(text: str, name: str, kind: str) -> Task:
    """A task from JSONL (``kind="jsonl"``) or CSV (``kind="csv"``) text; errors name the line.

    Raises:
        MSAInputError: text over ``MAX_TASK_CHARS``, a bad line or row (naming it), an unknown kind.
    """
    check_task_size(len(text), name)
    if kind == "jsonl":
        rows, lines = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise MSAInputError(
                    f"{name} line {number}: not valid JSON ({err.msg}); each line must be an "
                    'object like {"prompt": "The capital of France is", "target": " Paris"}'
                ) from None
            lines.append(number)
        return task_from_rows(rows, name, lambda i: f"{name} line {lines[i]}")
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = [f for f in ("prompt", "target") if f not in (reader.fieldnames or [])]
        if missing:
            raise MSAInputError(
                f"{name} line 1: the CSV header must name the columns prompt, target (and "
                f"optional group); missing {missing}, found {reader.fieldnames}"
            )
        rows, lines = [], []
        try:
            for row in reader:
                if None in row:
                    raise MSAInputError(
                        f"{name} line {reader.line_num}: more cells than header columns"
                    )
                rows.append(row)
                lines.append(reader.line_num)
        except csv.Error as err:
            raise MSAInputError(
                f"{name} after line {reader.line_num}: not valid CSV ({err})"
            ) from None
        return task_from_rows(rows, name, lambda i: f"{name} line {lines[i]}")
    raise MSAInputError(f"unknown task format {kind!r}; allowed: jsonl, csv")


def bundled_tasks() -> list[str]:
    """Names of the bundled task sets."""
    return sorted(path.stem for path in TASKS_DIR.glob("*.jsonl"))


def load_task(source: str | Path | Task | Sequence[dict[str, Any]]) -> Task:
    """A task from a ``.jsonl``/``.csv`` path, a bundled task set's name, a list of dicts or a Task.

    Raises:
        MSAInputError: an unreadable or invalid source (naming the file and line).
    """
    if isinstance(source, Task):
        return source
    if isinstance(source, (list, tuple)):
        return task_from_rows(source)
    if not isinstance(source, (str, Path)):
        raise MSAInputError(
            f"task must be a file path, a bundled task name or a list of rows; "
            f"got {type(source).__name__}"
        )
    path = Path(source).expanduser()
    if path.suffix.lower() in (".jsonl", ".csv"):
        if not path.is_file():
            raise MSAInputError(f"task file {path} does not exist")
        check_task_size(path.stat().st_size, str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise MSAInputError(f"cannot read task file {path} as UTF-8 text: {err}") from None
        return parse_task(text, path.name, path.suffix.lower()[1:])
    if str(source) in bundled_tasks():
        return parse_task(
            (TASKS_DIR / f"{source}.jsonl").read_text(encoding="utf-8"), str(source), "jsonl"
        )
    raise MSAInputError(
        f"task {str(source)!r} is neither a .jsonl/.csv file nor a bundled task set; "
        f"bundled: {', '.join(bundled_tasks()) or 'none'}"
    )


@dataclass(frozen=True)
class EncodedTask:
    """A task as model inputs, and where to read its scores.

    inputs: ``input_ids``, ``attention_mask`` (``position_ids`` too if left-padded), ``[B, T]``.
    positions: long ``[B, K]``: the logit positions predicting each target token (padded with 0).
    targets: long ``[B, K]``: the target tokens (padded with 0).
    scored: bool ``[B, K]``: True at real (not padded) entries.
    """

    task: Task
    inputs: dict[str, torch.Tensor]
    positions: torch.Tensor
    targets: torch.Tensor
    scored: torch.Tensor


def encode_task(
    task: Task, tokenizer: Any, padding: str = "right", max_prompt_tokens: int = MAX_PROMPT_TOKENS
) -> EncodedTask:
    """Tokenise and pad a task for one batched forward pass.

    Raises:
        MSAInputError: a target that tokenises to nothing or a prompt over ``max_prompt_tokens``
            tokens (naming the line), or an unknown padding.
    """
    if padding not in PADDINGS:
        raise MSAInputError(f"unknown padding {padding!r}; allowed: {', '.join(PADDINGS)}")
    rows, prompt_lengths, target_ids = [], [], []
    for example in task.examples:  # truncated one past the limit: a long text costs no more
        guard = {"truncation": True, "max_length": max_prompt_tokens + 1}
        prompt = tokenizer(example.prompt, **guard)["input_ids"]
        target = tokenizer(example.target, add_special_tokens=False, **guard)["input_ids"]
        if not target:
            raise MSAInputError(
                f"{example.where}: the target {example.target!r} tokenises to nothing"
            )
        for what, ids in (("prompt", prompt), ("target", target)):
            if len(ids) > max_prompt_tokens:
                raise MSAInputError(
                    f"{example.where}: the {what} has more than {max_prompt_tokens} tokens; at "
                    f"most {max_prompt_tokens} are allowed"
                )
        rows.append(prompt + target)
        prompt_lengths.append(len(prompt))
        target_ids.append(target)
    length, width = max(map(len, rows)), max(map(len, target_ids))
    batch = len(rows)
    ids = torch.zeros(batch, length, dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.long)
    positions = torch.zeros(batch, width, dtype=torch.long)
    targets = torch.zeros(batch, width, dtype=torch.long)
    scored = torch.zeros(batch, width, dtype=torch.bool)
    pad = getattr(tokenizer, "pad_token_id", None) or getattr(tokenizer, "eos_token_id", None) or 0
    for b, (row, start, target) in enumerate(zip(rows, prompt_lengths, target_ids, strict=True)):
        shift = length - len(row) if padding == "left" else 0
        ids[b].fill_(pad)
        ids[b, shift : shift + len(row)] = torch.tensor(row)
        mask[b, shift : shift + len(row)] = 1
        positions[b, : len(target)] = shift + start - 1 + torch.arange(len(target))
        targets[b, : len(target)] = torch.tensor(target)
        scored[b, : len(target)] = True
    inputs = {"input_ids": ids, "attention_mask": mask}
    if padding == "left":
        inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp_min(0)
    return EncodedTask(task, inputs, positions, targets, scored)


def task_values(raw: Any, encoded: EncodedTask, output: str) -> torch.Tensor:
    """Per-example values ``[C * B]`` of the raw output for C copies of the task's batch.

    output ``task_logprob``: the target's summed log-probability; ``task_accuracy``: 1.0 where every
    target token is the argmax (greedy decoding reproduces the target), else 0.0.
    """
    return task_output_fn(encoded, output)(raw, 0)


def task_output_fn(encoded: EncodedTask, output: str) -> ColumnScores:
    """The output ``task_values`` computes, for ``ModelGame(output=...)``: it reads the logits at
    the positions predicting target tokens only, so that a game runs the LM head only there."""
    if output not in TASK_OUTPUTS:
        raise MSAInputError(f"unknown task output {output!r}; allowed: {', '.join(TASK_OUTPUTS)}")
    columns = torch.unique(encoded.positions[encoded.scored])  # sorted: the positions read
    index = torch.searchsorted(columns, encoded.positions).clamp(max=len(columns) - 1)  # [B, K]

    def values(picked_columns: torch.Tensor) -> torch.Tensor:  # [C * B, P, V] -> [C * B]
        copies = picked_columns.shape[0] // index.shape[0]
        where = index.to(picked_columns.device).repeat(copies, 1)
        targets = encoded.targets.to(picked_columns.device).repeat(copies, 1)
        scored = encoded.scored.to(picked_columns.device).repeat(copies, 1)
        rows = torch.arange(picked_columns.shape[0], device=picked_columns.device)[:, None]
        picked = picked_columns[rows, where].float()  # [C * B, K, V]
        if output == "task_accuracy":
            return ((picked.argmax(-1) == targets) | ~scored).all(-1).float()
        logprob = picked.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        return (logprob * scored).sum(-1)

    return ColumnScores(columns, values, output)


def group_means(
    values: np.ndarray, group_index: np.ndarray, n_groups: int, axis: int = -1
) -> np.ndarray:
    """Means over each group's examples along ``axis``: ``[..., B, ...] -> [..., G, ...]``."""
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    onehot = np.eye(n_groups)[group_index]  # [B, G]
    return np.moveaxis(values @ (onehot / onehot.sum(0)), -1, axis)


def with_task(
    loaded: LoadedModel, task: str | Path | Task | Sequence[dict[str, Any]], padding: str = "right"
) -> LoadedModel:
    """A ``LoadedModel`` whose inputs are ``task`` and whose outputs are ``TASK_OUTPUTS``.

    Args:
        loaded: a language model with a tokenizer (``msa_core.zoo.LoadedModel``).
        task: anything ``load_task`` reads.
    Raises:
        MSAInputError: the model has no tokenizer, or the task is invalid.
    """
    from dataclasses import replace

    if loaded.tokenizer is None:
        raise MSAInputError(
            f"model {loaded.card.name!r} has no tokenizer; tasks need a language model with one "
            "(a Hugging Face checkpoint folder with tokenizer.json, or a fetched LLM)"
        )
    task = load_task(task)
    limit = getattr(getattr(loaded.model, "config", None), "max_position_embeddings", None)
    encoded = encode_task(
        task, loaded.tokenizer, padding, min(MAX_PROMPT_TOKENS, (limit or 1 << 30) // 2)
    )

    def factory(output: str) -> Callable[[Any, Any], ColumnScores]:
        def make(inputs: Any, labels: Any) -> ColumnScores:
            ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
            if not isinstance(ids, torch.Tensor) or not torch.equal(
                ids.cpu(), encoded.inputs["input_ids"]
            ):
                raise MSAInputError(
                    f"output={output!r} scores the task {task.name!r} on its own inputs; "
                    "give other examples as another task"
                )
            return task_output_fn(encoded, output)

        return make

    facts = {
        **loaded.card.facts,
        "task": task.name,
        "task_digest": task.digest(),
        "task_groups": list(task.groups),
    }
    card = replace(
        loaded.card,
        outputs=TASK_OUTPUTS,
        output_fns={name: factory(name) for name in TASK_OUTPUTS},
        data=lambda: (encoded.inputs, None),
        facts=facts,
    )
    return replace(loaded, card=card, inputs=encoded.inputs, labels=None, task=encoded)


def task_meta(task: Task) -> dict[str, Any]:
    """What a stored result keeps of its task: name, digest, groups and examples (for analyses)."""
    return {
        "name": task.name,
        "digest": task.digest(),
        "groups": list(task.groups),
        "examples": [
            {"prompt": e.prompt, "target": e.target, "group": e.group} for e in task.examples
        ],
    }


def task_of_meta(meta: dict[str, Any]) -> Task:
    """The task a stored result's ``meta["task"]`` describes."""
    return task_from_rows(meta["examples"], meta["name"])


def task_of_run(meta: dict[str, Any]) -> tuple[Task, str | None]:
    """The task a stored run scored: the examples stored with it (never its file, whose content may
    have changed, and whose relative path may not resolve from here), and a note when the file its
    request names no longer holds those examples (or cannot be read).

    Args:
        meta: a stored result's meta, with ``"task"`` (``task_meta``) and ``"request"``.
    """
    task = task_of_meta(meta["task"])
    source = (meta.get("request") or {}).get("task")
    if not source:
        return task, None
    try:
        now = load_task(source).digest()
    except MSAInputError:
        now = None
    if now == meta["task"]["digest"]:
        return task, None
    state = "cannot be read from here" if now is None else "now holds other examples"
    return task, (
        f"the task file {source} {state}; this analysis uses the {len(task.examples)} examples "
        "stored with the run"
    )


def save_task(task: Task, directory: str | Path) -> Path:
    """Write a task as ``<directory>/<digest>.jsonl`` (an upload, so that a run can name it)."""
    path = Path(directory) / f"{task.digest()[:16]}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(task.to_jsonl(), encoding="utf-8")
    return path


def example_names(task: Task, width: int = 40) -> list[str]:
    """``[B]`` one readable, unique label per example: ``"<i> <group>: <prompt>"`` (the prompt's
    newlines shown as ⏎, cut to ``width`` characters)."""
    names = []
    for index, example in enumerate(task.examples):
        prompt = example.prompt.replace("\n", " ⏎ ").strip()
        prompt = prompt if len(prompt) <= width else prompt[: width - 1] + "…"
        names.append(f"{index} {example.group}: {prompt}")
    return names
