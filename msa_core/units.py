"""Unit specs: which units of a PyTorch model are the players of an MSA game.

A spec names module paths (dotted names of ``model.named_modules()``; ``*`` matches one path
segment, a list names several modules) and a granularity:

- ``Neurons(path)``: entries of the last dimension of the module's output (Linear layers, MLP
  blocks); ``Neurons(path, of="input")``: of its input instead (a transformer MLP's neurons at its
  down projection).
- ``Channels(path)``: dim 1 of the module's output ``[B, C, *spatial]`` (conv, conv-transpose, their
  activations).
- ``Heads(path)``: heads of an attention module, cut at the input of its output projection.
- ``Experts(path, mode)``: routed experts of a mixture-of-experts block, cut at its router.
- ``Blocks(path)``: sublayers (an attention or MLP module) whose whole output is set to zero (or its
  mean).
- ``Layers(path)``: residual blocks skipped whole (output = input); ``path`` is a container of
  blocks (ModuleList / Sequential), a wildcard, or a list of block paths.

Several specs combine into one player set by passing a list to ``ModelGame``; players keep the order
of the specs, then of the modules, then of the units. Player names are ``<tag>.<unit>``:
``fc1.n17``, ``main.5.c3``, ``L0.H3``, ``L1.E5``, ``L1.Eshared``, ``L0.mlp``, ``L2``. The tag of a
module is the spec's ``name`` or, by default, its path (Neurons, Channels) or ``L<i>`` with ``i``
the last integer in its path (Heads, Experts, Layers; ``L<i>.<last path segment>`` for Blocks). When
one named spec covers several modules, the tag is ``name`` + that integer.

>>> Experts("model.layers.*.mlp", mode="reroute").mode
'reroute'
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import ClassVar

from torch import nn

from msa_core.errors import MSAInputError

Path = str | tuple[str, ...] | list[str]
UNIT_KINDS: dict[str, type[UnitSpec]] = {}  # granularity: its spec class, each added as defined


@dataclass(frozen=True)
class UnitSpec:
    """Base of all specs: module path(s) plus an optional player-name tag."""

    path: Path
    name: str | None = field(default=None, kw_only=True)

    granularity: ClassVar[str]
    letter: ClassVar[str]  # before a unit's index in player names
    layered: ClassVar[bool] = False  # default tag L<i> instead of the path

    def __init_subclass__(cls, **kwargs: object) -> None:
        """A class that declares its own ``granularity`` is a unit kind: it joins ``UNIT_KINDS``
        (and ``msa_core.lesion.sites.SITES`` must name the site that lesions it)."""
        super().__init_subclass__(**kwargs)
        if "granularity" in cls.__dict__:
            UNIT_KINDS[cls.granularity] = cls

    def modules(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """The ``(path, module)`` pairs this spec covers, in model order."""
        return resolve(model, self.path)

    def tag(self, path: str, n_modules: int) -> str:
        """Player-name prefix for the units of the module at ``path``."""
        index = last_index(path)
        if self.name is not None:
            return self.name if n_modules == 1 or index is None else f"{self.name}{index}"
        return f"L{index}" if self.layered and index is not None else path

    def unit_names(self, tag: str, n_units: int) -> list[str]:
        """Player names of a module's units."""
        return [f"{tag}.{self.letter}{i}" for i in range(n_units)]


@dataclass(frozen=True)
class Neurons(UnitSpec):
    """Entries of the last dimension of the module's output (``of="input"``: of its first input);
    players ``<tag>.n<i>``."""

    of: str = "output"
    granularity = "neurons"
    letter = "n"

    def __post_init__(self) -> None:
        if self.of not in ("output", "input"):
            raise MSAInputError(f"Neurons of= must be 'output' or 'input'; got {self.of!r}")


@dataclass(frozen=True)
class Channels(UnitSpec):
    """Channels (dim 1) of the module's output ``[B, C, *spatial]``; players ``<tag>.c<i>``."""

    granularity = "channels"
    letter = "c"


@dataclass(frozen=True)
class Heads(UnitSpec):
    """Attention heads; ``n_heads`` overrides the count read from the module; players
    ``<tag>.H<i>``."""

    n_heads: int | None = None
    granularity = "heads"
    letter = "H"
    layered = True


@dataclass(frozen=True)
class Experts(UnitSpec):
    """Routed experts of an MoE block; players ``<tag>.E<i>``.

    mode ``"remove"``: the expert keeps its tokens but its routed weight is 0 (its output is
    dropped). mode ``"reroute"``: its router logit is -inf, so top-k picks the next intact expert.
    ``shared_expert=True`` adds the always-on shared expert of Qwen2-MoE-style blocks as one more
    player ``<tag>.Eshared`` (lesioned by zeroing, or mean-filling, its output).
    """

    mode: str = "remove"
    shared_expert: bool = False
    granularity = "experts"
    letter = "E"
    layered = True

    def __post_init__(self) -> None:
        if self.mode not in ("remove", "reroute"):
            raise MSAInputError(f"Experts mode must be 'remove' or 'reroute'; got {self.mode!r}")

    def unit_names(self, tag: str, n_units: int) -> list[str]:
        routed = super().unit_names(tag, n_units - self.shared_expert)
        return routed + [f"{tag}.Eshared"] if self.shared_expert else routed


@dataclass(frozen=True)
class Blocks(UnitSpec):
    """Sublayers, each one player ``L<i>.<name>`` (e.g. ``L3.mlp``) whose lesion sets its whole
    output (the first tensor of a tuple) to zero, or to its mean over tokens for lesion="mean"."""

    granularity = "blocks"
    letter = ""
    layered = True

    def tag(self, path: str, n_modules: int) -> str:
        index = last_index(path)
        if self.name is not None or index is None:
            return super().tag(path, n_modules)
        return f"L{index}.{path.rsplit('.', 1)[-1]}"

    def unit_names(self, tag: str, n_units: int) -> list[str]:
        return [tag]


@dataclass(frozen=True)
class Layers(UnitSpec):
    """Residual blocks, each one player ``<tag>`` whose lesion skips it (output = input)."""

    granularity = "layers"
    letter = ""
    layered = True

    def modules(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        if isinstance(self.path, str) and "*" not in self.path:
            container = resolve(model, self.path)[0][1]
            if not isinstance(container, (nn.ModuleList, nn.Sequential)):
                raise MSAInputError(
                    f"Layers({self.path!r}) needs a ModuleList or Sequential of blocks, got "
                    f"{type(container).__name__}; give a list of block paths or a wildcard like "
                    f"'{self.path}.*' for other layouts"
                )
            prefix = f"{self.path}." if self.path else ""
            return [(f"{prefix}{key}", block) for key, block in container.named_children()]
        return resolve(model, self.path)

    def unit_names(self, tag: str, n_units: int) -> list[str]:
        return [tag]


def last_index(path: str) -> int | None:
    """The last all-digit segment of a dotted path, e.g. 3 for ``model.layers.3.mlp``."""
    digits = [part for part in path.split(".") if part.isdigit()]
    return int(digits[-1]) if digits else None


def resolve(model: nn.Module, path: Path) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` pairs for a path, a ``*`` pattern or a list of them; clear errors
    otherwise."""
    if isinstance(path, (list, tuple)):
        if not path:
            raise MSAInputError("a unit spec needs at least one module path; got an empty list")
        return [pair for one in path for pair in resolve(model, one)]
    if not isinstance(path, str):
        raise MSAInputError(
            f"a module path must be a string or a list of strings; got {type(path).__name__}"
        )
    named = dict(model.named_modules())
    if "*" in path:
        pattern = path.split(".")
        found = [
            (name, module)
            for name, module in named.items()
            if len(parts := name.split(".")) == len(pattern)
            and all(map(fnmatchcase, parts, pattern))
        ]
    else:
        found = [(path, named[path])] if path in named else []
    if not found:
        close = difflib.get_close_matches(path, list(named), n=5, cutoff=0.5)
        hint = (
            f"; close matches: {', '.join(close)}"
            if close
            else "; see model.named_modules() for valid paths"
        )
        raise MSAInputError(f"no module at path {path!r} in {type(model).__name__}{hint}")
    return found


def check_unique(names: list[str]) -> None:
    """Raise a clear error when two players share a name (e.g. one module in two specs)."""
    dupes = sorted(name for name, count in Counter(names).items() if count > 1)
    if dupes:
        raise MSAInputError(
            f"player names must be unique; {', '.join(dupes[:5])} appear more than once. "
            "A module may appear in one spec only; give specs distinct name= tags"
        )
