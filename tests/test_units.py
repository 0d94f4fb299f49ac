"""Unit specs: module paths, wildcards, player names, spec validation."""

import pytest
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.units import Channels, Experts, Heads, Layers, Neurons, last_index, resolve


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.Linear(4, 4)
        self.mlp = nn.Linear(4, 4)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.layers = nn.ModuleList([Block() for _ in range(3)])
        self.conv = nn.Conv2d(1, 2, 3)


NET = Net()


def test_resolve_exact_wildcard_and_list():
    assert [p for p, _ in resolve(NET, "fc1")] == ["fc1"]
    assert [p for p, _ in resolve(NET, "layers.*.mlp")] == [
        "layers.0.mlp",
        "layers.1.mlp",
        "layers.2.mlp",
    ]
    assert [p for p, _ in resolve(NET, ["layers.2.attn", "fc1"])] == ["layers.2.attn", "fc1"]
    assert resolve(NET, "layers.1")[0][1] is NET.layers[1]


def test_wildcard_matches_one_segment_only():
    assert [p for p, _ in resolve(NET, "layers.*")] == ["layers.0", "layers.1", "layers.2"]


def test_unknown_path_lists_close_matches():
    with pytest.raises(MSAInputError, match=r"no module at path 'layers\.0\.mpl'.*layers\.0\.mlp"):
        resolve(NET, "layers.0.mpl")
    with pytest.raises(MSAInputError, match="no module at path 'nothing.*'"):
        resolve(NET, "nothing.*")
    with pytest.raises(MSAInputError, match="at least one module path"):
        resolve(NET, [])
    with pytest.raises(MSAInputError, match="must be a string"):
        resolve(NET, 3)


def test_last_index():
    assert last_index("model.layers.12.mlp") == 12
    assert last_index("fc1") is None


def test_player_names_by_granularity():
    assert Neurons("fc1").unit_names(Neurons("fc1").tag("fc1", 1), 2) == ["fc1.n0", "fc1.n1"]
    assert Channels("conv").unit_names("conv", 2) == ["conv.c0", "conv.c1"]
    heads = Heads("layers.*.attn")
    assert heads.tag("layers.0.attn", 3) == "L0"
    assert heads.unit_names("L0", 4)[3] == "L0.H3"
    experts = Experts("layers.*.mlp")
    assert experts.unit_names(experts.tag("layers.1.mlp", 3), 6)[5] == "L1.E5"
    assert Experts("m", shared_expert=True).unit_names("L0", 3) == ["L0.E0", "L0.E1", "L0.Eshared"]


def test_name_overrides_the_tag():
    assert Neurons("fc1", name="hidden").tag("fc1", 1) == "hidden"
    assert Heads("layers.*.attn", name="enc").tag("layers.2.attn", 3) == "enc2"
    assert Neurons("layers.*.mlp").tag("layers.2.mlp", 3) == "layers.2.mlp"


def test_layers_expands_a_container_or_takes_block_paths():
    layers = Layers("layers")
    found = layers.modules(NET)
    assert [p for p, _ in found] == ["layers.0", "layers.1", "layers.2"]
    assert [layers.unit_names(layers.tag(p, 3), 1) for p, _ in found] == [["L0"], ["L1"], ["L2"]]
    assert [p for p, _ in Layers(["layers.2", "layers.0"]).modules(NET)] == ["layers.2", "layers.0"]
    assert [p for p, _ in Layers("layers.*").modules(NET)] == ["layers.0", "layers.1", "layers.2"]
    with pytest.raises(MSAInputError, match="ModuleList or Sequential"):
        Layers("fc1").modules(NET)


def test_spec_arguments():
    assert Experts("m", "reroute").mode == "reroute"
    with pytest.raises(MSAInputError, match="'remove' or 'reroute'"):
        Experts("m", mode="drop")
    assert Heads("a", n_heads=2).n_heads == 2


def test_every_unit_kind_has_the_site_that_lesions_it():
    """A unit kind is declared once (a spec class with its granularity); the sites know them all."""
    from msa_core.lesion.sites import SITES
    from msa_core.units import UNIT_KINDS, UnitSpec

    assert set(UNIT_KINDS) == {"neurons", "channels", "heads", "experts", "blocks", "layers"}
    assert set(UNIT_KINDS.values()) == set(SITES)

    class Rows(UnitSpec):  # a new kind without a site is refused by name, not lesioned wrongly
        granularity = "rows"
        letter = "r"

    try:
        from msa_core.lesion.sites import make_site

        with pytest.raises(MSAInputError, match="Rows has no lesion site; unit kinds: .*Rows"):
            make_site(Rows("fc1"), "fc1", NET.fc1, "fc1")
    finally:
        del UNIT_KINDS["rows"]
