"""Findings from results: one module per study (``study1`` MLP hubs, ``study2`` MoE experts,
``study3`` GAN layers) plus ``modes`` (views and concentration metrics any result has). Numbers plus
plotly figures."""
