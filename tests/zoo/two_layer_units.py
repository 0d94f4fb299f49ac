"""The units a two-layer dense transformer (decoder or encoder) offers, in the order
``granularities_of`` lists them: the expectation the family, encoder and structure tests share."""

TWO_LAYER_GRANULARITIES = [
    "heads",
    "attention blocks",
    "mlp blocks",
    "mlp neurons (layer 0)",
    "mlp neurons (layer 1)",
    "layers",
]
