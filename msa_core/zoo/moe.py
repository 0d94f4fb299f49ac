"""Placeholder for the moe family of bundled models (filled in by its own change)."""

from __future__ import annotations

from msa_core.zoo.card import ModelCard


def cards() -> list[ModelCard]:
    """The cards of this family's models."""
    return []
