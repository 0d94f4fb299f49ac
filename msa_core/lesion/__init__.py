"""Lesioning real models: ``ModelGame`` turns a PyTorch model into an MSA game over its units.

Modules: ``game`` (ModelGame), ``sites`` (per-granularity hooks), ``plans`` (how a chunk of
coalitions runs: whole model, prefix reuse, push-forward), ``chain`` (chain models), ``outputs``
(named outputs), ``inputs`` (batches and devices), ``hooks`` (hook registration and per-copy
masking).
"""

from msa_core.lesion.game import LESIONS, ModelGame
from msa_core.lesion.outputs import NAMED_OUTPUTS, CustomOutput

__all__ = ["LESIONS", "NAMED_OUTPUTS", "CustomOutput", "ModelGame"]
