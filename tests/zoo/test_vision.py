"""EfficientNet-Lite0 (``zoo.vision``): TensorFlow "SAME" padding, stage channels lesioned = the
channel's weights zeroed, the photographs and image folders; and (marked ``pretrained``: after
``python -m msa_core.zoo.fetch efficientnet-lite0``) the real ImageNet weights through the API and
the CLI."""

import copy

import numpy as np
import pytest
import torch
from fetched import require_fetched

from msa_core.errors import MSAInputError
from msa_core.lesion import ModelGame
from msa_core.zoo import vision

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return vision.efficientnet_lite0().eval()


def test_same_padding_keeps_ceil_of_size_over_stride():
    conv = vision.SameConv2d(1, 1, 5, 2)
    assert conv(torch.zeros(1, 1, 7, 9)).shape[-2:] == (4, 5)
    three = vision.SameConv2d(1, 1, 3, 1, bias=False)
    with torch.no_grad():  # a 3x3 box sum with one zero on each side: a corner sees 4 ones
        three.weight.fill_(1.0)
        assert float(three(torch.ones(1, 1, 4, 4))[0, 0, 0, 0]) == 4.0


def test_stage_channels_lesion_equals_zeroing_their_batch_norm(model):
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    granularities = vision.granularities(model)
    assert [granularities[f"stage {s} channels"][0].path for s in range(7)] == [
        f"blocks.{i}" for i in (0, 2, 4, 7, 10, 14, 15)
    ]
    for stage, channels in ((0, (3, 7)), (6, (0, 100))):
        game = ModelGame(model, images, list(granularities[f"stage {stage} channels"]))
        keep = np.ones((1, game.n_players), bool)
        keep[0, list(channels)] = False
        edited = copy.deepcopy(model)
        with torch.no_grad():  # a non-residual block's output channel is its last BatchNorm's
            norm = edited.blocks[vision.stage_ends()[stage]].project.bn
            norm.weight[list(channels)] = 0
            norm.bias[list(channels)] = 0
            torch.testing.assert_close(game(keep)[0], edited(images), atol=1e-4, rtol=1e-4)


def test_packaged_names_map_onto_the_module():
    assert vision.renamed("_blocks.3._depthwise_conv.weight") == "blocks.3.depthwise.conv.weight"
    assert vision.renamed("_bn1.running_var") == "head.bn.running_var"
    assert vision.renamed("_fc.bias") == "classifier.bias"
    with pytest.raises(MSAInputError, match="unexpected weight"):
        vision.renamed("_extra.weight")


def test_an_image_folder_needs_labels_and_stays_inside(tmp_path):
    from PIL import Image

    with pytest.raises(MSAInputError, match="no labels.csv"):
        vision.load_image_folder(tmp_path)
    Image.fromarray(np.full((300, 260, 3), 200, np.uint8)).save(tmp_path / "grey.png")
    (tmp_path / "labels.csv").write_text("file,label\ngrey.png,3\n", encoding="utf-8")
    images = vision.load_image_folder(tmp_path)
    assert images.images.shape == (1, 3, vision.SIZE, vision.SIZE) and images.labels.tolist() == [3]
    assert int(vision.picture_of(images.images[0])[0, 0, 0]) == 200  # preprocessing inverts
    (tmp_path / "labels.csv").write_text("file,label\n../x.png,3\n", encoding="utf-8")
    with pytest.raises(MSAInputError, match="outside"):
        vision.load_image_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\ngrey.png,1000\n", encoding="utf-8")
    with pytest.raises(MSAInputError, match="line 2"):
        vision.load_image_folder(tmp_path)


def efficientnet():
    require_fetched("efficientnet-lite0")
    from msa_core.zoo import load_model

    return load_model("efficientnet-lite0")


@pytest.mark.pretrained
def test_fetched_efficientnet_classifies_the_photographs():
    from msa_core.estimators import shapley_modes

    loaded = efficientnet()
    assert loaded.labels.shape == (len(vision.PHOTOS) * len(vision.CROPS),)
    correct = loaded.game("residual blocks", "correct")(np.ones((1, 9), bool))[0]
    assert float(correct.mean()) >= 0.8  # labels are what the model sees in most crops
    from msa_core.analysis.samples import sample_input

    shown = sample_input(loaded, 0)  # the Modes page shows the photograph beside the modes
    assert shown.photo.shape == (vision.SIZE, vision.SIZE, 3) and shown.label == "285 Egyptian cat"
    game = loaded.game("residual blocks")
    result = shapley_modes(game, method="permutation", n_permutations=2, seed=0)
    np.testing.assert_allclose(
        result.modes.sum(0), result.v_full - result.v_empty, atol=1e-4, rtol=1e-4
    )


@pytest.mark.pretrained
def test_fetched_efficientnet_runs_from_the_cli(capsys, tmp_path):
    from PIL import Image

    from msa_core.cli import main

    efficientnet()
    images = tmp_path / "images"  # a user's folder: two of the photographs, labelled
    images.mkdir()
    for photo in vision.PHOTOS[:2]:
        Image.open(vision.skimage_data() / photo.file).save(images / photo.file)
    rows = "".join(f"{photo.file},{photo.label}\n" for photo in vision.PHOTOS[:2])
    (images / "labels.csv").write_text("file,label\n" + rows, encoding="utf-8")
    args = ["run", "--model", "efficientnet-lite0", "--units", "residual blocks"]
    args += ["--task", str(images), "--method", "permutation", "--permutations", "2"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) in (0, None)
    assert "9 units, outputs [2]" in capsys.readouterr().out


@pytest.mark.pretrained
def test_the_dashboard_shows_a_run_of_the_fetched_efficientnet_with_its_photograph(
    tmp_path, monkeypatch
):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from msa_core.runs import RunRequest, RunStore, execute
    from msa_core.zoo.fetch import model_folder

    efficientnet()
    store = tmp_path / "cache"
    (store / "models").mkdir(parents=True)
    folder = model_folder("efficientnet-lite0")
    (store / "models" / folder.name).symlink_to(folder)  # the fetched model, in the app's store
    monkeypatch.setenv("MSA_CACHE_DIR", str(store))
    request = RunRequest(  # per-class logits: the Modes page's per-sample view
        "efficientnet-lite0", "residual blocks", "logits", method="permutation", n_permutations=2
    )
    execute(request, RunStore(store))
    app = AppTest.from_file(str(Path(__file__).parents[2] / "app.py"), default_timeout=120).run()
    app.switch_page("pages/modes.py").run()
    app.radio(key="modes_view").set_value("sample").run()
    assert not app.exception, [e.value for e in app.exception]
    [picture] = app.get("image")
    assert "label 285 Egyptian cat" in str(picture.proto)


def test_a_vit_folder_offers_heads_and_layers_equal_to_weight_edits(tmp_path):
    import importlib.util
    import json
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("the photographs need scikit-image: pip install --no-deps scikit-image")
    from msa_core.zoo import load_model

    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=24,
        image_size=32,
        patch_size=8,
        num_labels=3,
    )
    model = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.3)
    folder = tmp_path / "tiny-vit"
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}), "utf-8"
    )
    loaded = load_model(f"hf:{folder}")
    assert loaded.card.family == "vision" and loaded.inputs.shape == (20, 3, 32, 32)
    assert list(loaded.card.granularities)[0] == "heads" and "layers" in loaded.card.granularities
    assert vision.picture_of(loaded.inputs[0], vision.pixels_of(loaded.card)).shape == (32, 32, 3)
    heads = loaded.game("heads", "logits")
    keep = np.ones((1, heads.n_players), bool)
    keep[0, [1, 6]] = False  # layer 0 head 1, layer 1 head 2
    layers = loaded.game("layers", "logits")
    edited, skipped = copy.deepcopy(loaded.model), copy.deepcopy(loaded.model)
    with torch.no_grad():
        for layer, head in ((0, 1), (1, 2)):
            edited.vit.layers[layer].attention.o_proj.weight[:, head * 4 : head * 4 + 4] = 0
        block = skipped.vit.layers[1]  # pre-norm: a block with both projections zero adds nothing
        for projection in (block.attention.o_proj, block.mlp.fc2):
            projection.weight.zero_()
            projection.bias.zero_()
        torch.testing.assert_close(
            heads(keep)[0], edited(loaded.inputs).logits, atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            layers(np.array([[True, False]]))[0],
            skipped(loaded.inputs).logits,
            atol=1e-5,
            rtol=1e-5,
        )
