"""Transformer structure discovered from module names, not from a list of model families.

A transformer is found as a ``ModuleList`` of blocks, each with an attention module (a child
named ``self_attn``, ``attn``, ``attention`` or ``self_attention``) holding a query projection
(``q_proj``, ``query``, ``q_lin``, or a fused ``c_attn`` / ``query_key_value`` / ``qkv_proj`` /
``Wqkv``) and an output projection (``o_proj``, ``out_proj``, ``c_proj``, ``dense``,
``out_lin``), and an MLP whose last projection is ``down_proj``, ``c_proj``, ``dense_4h_to_h``,
``fc2``, ``lin2`` or ``w2`` (inside a child ``mlp`` / ``feed_forward`` / ``ffn``; BERT-style
encoders keep it as ``output.dense``). A model without such blocks is refused with a message
naming what was not found.

>>> from torch import nn
>>> find_blocks(nn.Sequential(nn.Linear(2, 2)))
Traceback (most recent call last):
...
msa_core.errors.MSAInputError: Sequential has no ModuleList of transformer blocks; ...
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from msa_core.errors import MSAInputError
from msa_core.lesion.sites import OUT_PROJECTIONS  # the heads' cut: one list for both

ATTENTIONS = ("self_attn", "attn", "attention", "self_attention")
QUERY_PROJECTIONS = ("q_proj", "query", "q_lin", "c_attn", "query_key_value", "qkv_proj", "Wqkv")
MLPS = ("mlp", "feed_forward", "ffn")
DOWN_PROJECTIONS = ("down_proj", "c_proj", "dense_4h_to_h", "fc2", "lin2", "w2")
ENCODER_DOWN = "output.dense"  # BERT / RoBERTa / MiniLM: intermediate.dense -> output.dense


@dataclass(frozen=True)
class BlockParts:
    """Where the parts of one transformer block are, as paths relative to the block.

    ``heads_at`` is the module whose output projection ``out_projection`` (a child of it) takes the
    heads' concatenated outputs; ``mlp`` is the MLP module (None for BERT-style blocks, whose MLP is
    two children) and ``down`` its last projection (None for a mixture-of-experts MLP).
    """

    attention: str
    heads_at: str
    out_projection: str
    mlp: str | None
    down: str | None


@dataclass(frozen=True)
class Structure:
    """A model's transformer blocks: ``container`` (the ModuleList's path), each block's parts."""

    container: str
    blocks: tuple[BlockParts, ...]

    def path(self, layer: int, relative: str) -> str:
        """The model path of a part of block ``layer``."""
        return f"{self.container}.{layer}.{relative}"


def _child(module: nn.Module, names: tuple[str, ...]) -> str | None:
    return next(
        (name for name in names if isinstance(getattr(module, name, None), nn.Module)), None
    )


def _descendant(module: nn.Module, names: tuple[str, ...]) -> str | None:
    """The first submodule (in module order) whose last path segment is one of ``names``."""
    return next(
        (path for path, _ in module.named_modules() if path and path.rsplit(".", 1)[-1] in names),
        None,
    )


def block_problem(block: nn.Module) -> str | None:
    """What a transformer block lacks (None when it has an attention with query and output
    projections)."""
    attention = _child(block, ATTENTIONS)
    if attention is None:
        return f"no attention module ({' / '.join(ATTENTIONS)})"
    module = block.get_submodule(attention)
    if _descendant(module, QUERY_PROJECTIONS) is None:
        return f"an attention module {attention!r} without a query projection " + (
            f"({' / '.join(QUERY_PROJECTIONS)})"
        )
    if _descendant(module, OUT_PROJECTIONS) is None:
        return f"an attention module {attention!r} without an output projection " + (
            f"({' / '.join(OUT_PROJECTIONS)})"
        )
    return None


def is_moe_block(module: object) -> bool:
    """A sparse MoE block: routed ``experts`` plus a router ``gate`` with ``top_k``."""
    return hasattr(module, "experts") and hasattr(getattr(module, "gate", None), "top_k")


def block_parts(block: nn.Module) -> BlockParts:
    """The parts of a block that ``block_problem`` accepts."""
    attention = _child(block, ATTENTIONS)
    assert attention is not None  # checked by block_problem
    out = _descendant(block.get_submodule(attention), OUT_PROJECTIONS)
    assert out is not None
    heads_at, _, out_name = f"{attention}.{out}".rpartition(".")
    mlp = _child(block, MLPS)
    down: str | None
    if mlp is not None:
        module = block.get_submodule(mlp)
        name = None if is_moe_block(module) else _child(module, DOWN_PROJECTIONS)
        down = f"{mlp}.{name}" if name else None
    else:
        down = ENCODER_DOWN if _has(block, ENCODER_DOWN) else None
    return BlockParts(attention, heads_at, f"{heads_at}.{out_name}", mlp, down)


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def find_blocks(model: nn.Module) -> Structure:
    """The first ``ModuleList`` whose every block has an attention with query and output
    projections.

    Raises:
        MSAInputError: none does; the message names the module lists found and what their blocks
            lack.
    """
    lists = [
        (path, module)
        for path, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module)
    ]
    for path, module in lists:
        if all(block_problem(block) is None for block in module):
            return Structure(path, tuple(block_parts(block) for block in module))
    found = "; ".join(
        f"{path or '(root)'}[0] ({type(module[0]).__name__}) has {block_problem(module[0])}"
        for path, module in lists[:3]
        if block_problem(module[0]) is not None
    )
    raise MSAInputError(
        f"{type(model).__name__} has no ModuleList of transformer blocks; each block needs an "
        f"attention module ({' / '.join(ATTENTIONS)}) with a query projection "
        f"({' / '.join(QUERY_PROJECTIONS)}) and an output projection "
        f"({' / '.join(OUT_PROJECTIONS)}). "
        + (f"Found: {found}. " if found else "No ModuleList found. ")
        + "Use ModelGame with your own unit specs (msa_core.units) instead"
    )
