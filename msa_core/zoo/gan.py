"""Study 3 of the paper: a small conditional DCGAN on sklearn digits upsampled to 32x32.

Generator (an ``nn.Sequential``, so the lesion game reuses prefixes and pushes units forward):
``[B, 16 latent + 10 one-hot label]`` -> ``input`` (unflatten to ``[B, 26, 1, 1]``) -> blocks
``up4``, ``up8``, ``up16`` (each ``conv`` ConvTranspose2d, ``bn`` BatchNorm2d, ``relu``; 64@4x4,
32@8x8, 16@16x16) -> ``out`` (``conv`` ConvTranspose2d to 1@32x32, ``act`` Sigmoid). Players: the
channels after each ``relu`` and the output channel after ``act``, so the summed modes equal the
generated images minus the all-lesioned (black) image. Names: ``gan-digits-s{seed}``.

Training (deterministic on one thread): 8x8 digits (values 0-16) scaled to [0, 1] and upsampled
bicubically to 32x32; an AC-GAN-style discriminator (real/fake and class logits), Adam 2e-4,
betas (0.5, 0.999), batch 64. Quality: ``judge`` (a small CNN trained on the real upsampled digits,
weights ``assets/gan-judge-digits.safetensors``) must agree with the requested label.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from functools import cache, partial

import torch
from torch import nn
from torch.nn import functional as F

from msa_core.units import Channels, UnitSpec
from msa_core.zoo.card import ModelCard
from msa_core.zoo.mlp import digits_split
from msa_core.zoo.weights import load_weights, save_weights

LATENT, CLASSES, SIZE = 16, 10, 32
WIDTHS = (64, 32, 16)  # channels of the hidden blocks up4, up8, up16
HIDDEN_LAYERS = ("up4", "up8", "up16")
LAYERS = (*HIDDEN_LAYERS, "out")
SEEDS = (0, 1, 2)
STEPS, BATCH, LR = 2000, 64, 2e-4
N_IMAGES = 32  # default inputs: fixed latents, labels 0..9 cycling
INPUT_SEED = 1234
JUDGE = "gan-judge-digits"
LAYER_SPECS = {layer: Channels(f"{layer}.relu") for layer in HIDDEN_LAYERS} | {
    "out": Channels("out.act")
}


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d whose ``num_batches_tracked`` counter has shape ``[1]`` instead of ``[]`` (a 0-d
    tensor cannot be digested by ``tensor_digest``); the counter is unused with a fixed momentum."""
    norm = nn.BatchNorm2d(channels)
    norm.num_batches_tracked = torch.zeros(1, dtype=torch.long)
    return norm


def block(c_in: int, c_out: int, stride: int, padding: int) -> nn.Sequential:
    """ConvTranspose2d (4x4 kernel) -> BatchNorm2d -> ReLU, modules ``conv``, ``bn``, ``relu``."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False),
            bn=batch_norm(c_out),
            relu=nn.ReLU(),
        )
    )


def build() -> nn.Sequential:
    """The generator: ``[B, LATENT + CLASSES]`` -> images ``[B, 1, 32, 32]`` in [0, 1]."""
    a, b, c = WIDTHS
    return nn.Sequential(
        OrderedDict(
            input=nn.Unflatten(1, (LATENT + CLASSES, 1, 1)),
            up4=block(LATENT + CLASSES, a, 1, 0),
            up8=block(a, b, 2, 1),
            up16=block(b, c, 2, 1),
            out=nn.Sequential(
                OrderedDict(conv=nn.ConvTranspose2d(c, 1, 4, 2, 1), act=nn.Sigmoid())
            ),
        )
    )


def build_discriminator() -> nn.Sequential:
    """``[B, 1, 32, 32]`` -> ``[B, 1 + CLASSES]``: a real/fake logit and class logits."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, 2, 1),
        nn.BatchNorm2d(64),
        nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1),
        nn.BatchNorm2d(128),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(128 * 16, 1 + CLASSES),
    )


def build_judge() -> nn.Sequential:
    """The quality judge, a small CNN: ``[B, 1, 32, 32]`` -> class logits ``[B, 10]``."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 64, CLASSES),
    )


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Flat 8x8 digits ``[B, 64]`` in [0, 1] -> smooth images ``[B, 1, 32, 32]`` in [0, 1]
    (bicubic)."""
    return F.interpolate(
        x.view(-1, 1, 8, 8), size=(SIZE, SIZE), mode="bicubic", align_corners=False
    ).clamp(0, 1)


@cache
def digits_32() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits split of study 1 at 32x32: train ``[1437, 1, 32, 32]``, labels, test
    ``[360, ...]``, labels."""
    x_train, y_train, x_test, y_test = digits_split()
    return upsample(x_train), y_train, upsample(x_test), y_test


def generator_inputs(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Latents from ``seed`` beside one-hot ``labels [B]``: ``[B, LATENT + CLASSES]`` float32."""
    z = torch.randn(len(labels), LATENT, generator=torch.Generator().manual_seed(seed))
    return torch.cat([z, F.one_hot(labels, CLASSES).float()], 1)


def default_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """The game's fixed inputs ``[32, 26]`` (latents of seed 1234, labels 0..9 cycling) and labels
    ``[32]``."""
    labels = torch.arange(N_IMAGES) % CLASSES
    return generator_inputs(labels, INPUT_SEED), labels


def train(seed: int, steps: int = STEPS) -> nn.Sequential:
    """Train a generator adversarially (AC-GAN losses), deterministically; returned in eval mode."""
    x, y, _, _ = digits_32()
    torch.manual_seed(seed)
    generator, critic = build(), build_discriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=LR, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=LR, betas=(0.5, 0.999))
    draws = torch.Generator().manual_seed(seed)
    # one-sided label smoothing
    real_target, fake_target = (
        torch.full((BATCH,), 0.9),
        torch.zeros(BATCH),
    )
    for _ in range(steps):
        index = torch.randint(len(x), (BATCH,), generator=draws)
        wanted = torch.randint(CLASSES, (BATCH,), generator=draws)
        z = torch.randn(BATCH, LATENT, generator=draws)
        fake = generator(torch.cat([z, F.one_hot(wanted, CLASSES).float()], 1))
        real_out, fake_out = critic(x[index]), critic(fake.detach())
        loss_d = (
            F.binary_cross_entropy_with_logits(real_out[:, 0], real_target)
            + F.binary_cross_entropy_with_logits(fake_out[:, 0], fake_target)
            + F.cross_entropy(real_out[:, 1:], y[index])
            + F.cross_entropy(fake_out[:, 1:], wanted)
        )
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        out = critic(fake)
        loss_g = F.binary_cross_entropy_with_logits(out[:, 0], torch.ones(BATCH)) + F.cross_entropy(
            out[:, 1:], wanted
        )
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return generator.eval()


def train_judge(seed: int = 0, steps: int = 1500) -> nn.Sequential:
    """Train the judge on the real upsampled training digits (Adam 1e-3, batch 64); eval mode."""
    x, y, _, _ = digits_32()
    torch.manual_seed(seed)
    judge = build_judge()
    optimiser = torch.optim.Adam(judge.parameters(), lr=1e-3)
    draws = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(x), (BATCH,), generator=draws)
        loss = F.cross_entropy(judge(x[index]), y[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return judge.eval()


@cache
def load_judge() -> nn.Module:
    """The bundled judge in eval mode."""
    return load_weights(build_judge(), JUDGE)


def judge_accuracy(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images ``[B, 1, 32, 32]`` the judge assigns to ``labels [B]``."""
    judge = load_judge()
    with torch.inference_mode():
        predicted = judge(images.to(next(judge.parameters()).device)).argmax(1).cpu()
    return (predicted == labels.cpu()).float().mean().item()


def agreement(generator: nn.Module, n_per_class: int = 50, seed: int = 99) -> float:
    """Fraction of generated samples (``n_per_class`` per digit, latents from ``seed``) the judge
    labels as requested."""
    labels = torch.arange(CLASSES).repeat_interleave(n_per_class)
    device = next(generator.parameters()).device
    with torch.inference_mode():
        images = generator.eval()(generator_inputs(labels, seed).to(device))
    return judge_accuracy(images, labels)


def name_of(seed: int) -> str:
    return f"gan-digits-s{seed}"


def granularities() -> dict[str, tuple[UnitSpec, ...]]:
    """ "channels of every layer" (hidden blocks and the output) and one granularity per layer."""
    found: dict[str, tuple[UnitSpec, ...]] = {
        "channels of every layer": tuple(LAYER_SPECS.values())
    }
    return found | {f"channels of {layer}": (spec,) for layer, spec in LAYER_SPECS.items()}


def cards() -> list[ModelCard]:
    """One card per seed."""
    return [
        ModelCard(
            name=name_of(seed),
            family="gan",
            description=(
                "conditional DCGAN (64@4x4, 32@8x8, 16@16x16 -> 1@32x32) on sklearn digits, seed "
                f"{seed}"
            ),
            granularities=granularities(),
            outputs=("image",),
            build=build,
            data=default_inputs,
            train=partial(train, seed),
            facts={
                "seed": seed,
                "data": "sklearn digits upsampled to 32x32",
                "latent": LATENT,
                "layers": dict(zip(LAYERS, (*WIDTHS, 1), strict=True)),
                "images": N_IMAGES,
            },
        )
        for seed in SEEDS
    ]


if __name__ == "__main__":  # python -m msa_core.zoo.gan judge: train the quality judge
    if sys.argv[1:] != ["judge"]:
        sys.exit("usage: python -m msa_core.zoo.gan judge")
    torch.set_num_threads(1)
    print(f"wrote {save_weights(train_judge(), JUDGE)}")
