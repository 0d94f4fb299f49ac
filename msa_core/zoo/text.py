"""Multilingual text from Debian's fortunes packages, for training the bundled MoE LM (training time
only).

Each language's fortune files are split into cookies (separated by lines holding ``%``), cleaned
(ANSI colour codes dropped, whitespace collapsed to single spaces) and kept when their letters are
in the language's script (Latin, Cyrillic or Han) and long enough to be prose. The cookies are
shuffled with a fixed seed; the first ``n_heldout`` become held-out sentences, the rest training
text. At run time the held-out sentences come from ``assets/`` (see ``msa_core.zoo.moe``), so no
Debian package is needed there.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np

from msa_core.errors import MSAInputError

FORTUNES = Path("/usr/share/games/fortunes")
# language -> (Debian package, files or folders under FORTUNES, script)
SOURCES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "en": (
        "fortunes",
        (
            "wisdom",
            "people",
            "humorists",
            "platitudes",
            "politics",
            "work",
            "love",
            "men-women",
            "education",
            "science",
            "literature",
            "miscellaneous",
            "fortunes",
            "law",
            "food",
            "medicine",
            "pets",
            "sports",
            "songs-poems",
            "pratchett",
            "goedel",
            "kids",
        ),
        "LATIN",
    ),
    "de": ("fortunes-de", ("de",), "LATIN"),
    "es": ("fortunes-es", ("es",), "LATIN"),
    "it": ("fortunes-it", ("it",), "LATIN"),
    "pl": ("fortunes-pl", ("pl",), "LATIN"),
    "cs": ("fortunes-cs", ("cs",), "LATIN"),
    "ru": ("fortunes-ru", ("ru",), "CYRILLIC"),
    "bg": ("fortunes-bg", ("bg",), "CYRILLIC"),
    "zh": ("fortunes-zh", ("chinese", "tang300", "song100"), "CJK"),
}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\[[0-9;]*m")
MIN_CHARS, MIN_LETTER_SHARE, MIN_SCRIPT_SHARE = 40, 0.6, 0.9


def script_of(char: str) -> str:
    """The script a letter belongs to, from its Unicode name (``LATIN``, ``CYRILLIC``, ``CJK``
    ...)."""
    return unicodedata.name(char, "?").split(" ")[0]


def clean(cookie: str) -> str:
    """One line of text: colour codes dropped, whitespace runs collapsed to single spaces."""
    return " ".join(ANSI.sub("", cookie).split())


def is_prose(text: str, script: str) -> bool:
    """Long enough, mostly letters, and the letters (nearly all) in ``script``."""
    letters = [c for c in text if c.isalpha()]
    if len(text) < MIN_CHARS or len(letters) < MIN_LETTER_SHARE * len(text.replace(" ", "")):
        return False
    return sum(script_of(c) == script for c in letters) >= MIN_SCRIPT_SHARE * len(letters)


def fortune_files(language: str) -> list[Path]:
    """The fortune text files of one language (no ``.dat`` indexes, no offensive subfolders),
    sorted."""
    if language not in SOURCES:
        raise MSAInputError(f"unknown language {language!r}; allowed: {', '.join(SOURCES)}")
    package, names, _ = SOURCES[language]
    files = []
    for name in names:
        path = FORTUNES / name
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [
            f
            for f in candidates
            if f.is_file()
            and not f.is_symlink()
            and f.suffix not in (".dat", ".u8")
            and "off" not in f.relative_to(FORTUNES).parts
        ]
    if not files:
        raise MSAInputError(
            f"no fortunes for {language!r}: install the Debian package {package!r} "
            f"(apt-get install {package})"
        )
    return files


def cookies(language: str) -> list[str]:
    """Cleaned prose cookies of one language, deduplicated, in file order."""
    script = SOURCES[language][2]
    seen: dict[str, None] = {}
    for path in fortune_files(language):
        text = path.read_bytes().decode("utf-8", errors="ignore").replace("\r", "")
        for cookie in re.split(r"\n%+\n", "\n" + text + "\n"):
            cookie = clean(cookie)
            if is_prose(cookie, script):
                seen.setdefault(cookie, None)
    return list(seen)


def split_language(
    language: str, n_heldout: int, max_train_bytes: int, seed: int = 0
) -> tuple[list[str], bytes]:
    """(held-out sentences, training bytes): cookies shuffled with ``seed``; training cookies joined
    by newlines."""
    texts = cookies(language)
    order = np.random.default_rng(seed).permutation(len(texts))
    texts = [texts[i] for i in order]
    heldout, train = texts[:n_heldout], texts[n_heldout:]
    corpus = "\n".join(train).encode("utf-8")[:max_train_bytes]
    return heldout, corpus
