# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Vision Selective Scan (VSS) and the VL-Mamba connectors built on it.

A VSS module reads the patch grid of an image as several 1-D sequences, runs each through a Mamba layer, puts every
output back in raster order and merges them:

- `scan="bidirectional"` (BSM): the raster order (left to right, top to bottom) and its reverse;
- `scan="cross"` (CSM): the raster order, the column-major order (top to bottom, left to right), and the reverse of
  each, in that order.

Connectors (`connector_type`), from vision features `V` to the language model's width:

- `"vss_mlp"`: `MLP(Norm(VSS(V) + V))`, the scan at the vision tower's width;
- `"vss_l2"`: `V' = Linear(V)`, then `Linear(Norm(VSS(GELU(V')) + V'))`: the scan at the language model's width, its
  skip connection taking `V'` before the activation.

The design leaves open what the equations do not fix; vlmamba's choices, each a config field:

- `vss_share_directions=False`: every direction has a Mamba layer of its own, as in the cross-scan of VMamba and the
  bidirectional blocks of Vim, since the orders see different neighbours first; `True` runs one layer over all of
  them (the directions then go through it as one batch).
- `vss_merge="sum"`: the restored outputs are summed, as VMamba merges its directions; `"mean"` keeps the scale of a
  single direction whatever the number of directions.
- `vss_depthwise_conv=False`: no convolution before the scan: each Mamba layer already opens with its causal
  depthwise 1-D convolution; `True` adds a 3x3 depthwise 2-D convolution and SiLU over the grid first, as VMamba's
  block does, which mixes the neighbours above and below that a raster order puts far apart.
- `Norm` is a LayerNorm (`vss_norm_eps`), the norm of the Mamba/VMamba lineage.
- The Mamba layers are transformers' `MambaMixer`s, freshly initialized like a Mamba language model's layers, with
  `vss_state_size=16`, `vss_expand=2` and `vss_conv_kernel=4` (Mamba's defaults) and `time_step_rank` =
  ceil(width / 16). Being transformers' mixers, they run vlmamba's scan on CPU and mamba-ssm's kernels on CUDA
  when installed, as the language model does (`mamba_kernels`).
"""

import math

import torch
from torch import nn
from transformers import MambaConfig
from transformers.activations import ACT2FN
from transformers.models.mamba.modeling_mamba import MambaMixer

from .configuration_vlmamba import VSS_MERGES, VSS_SCANS


# Number of 1-D orders of each scan.
SCAN_DIRECTIONS = dict(zip(VSS_SCANS, (2, 4)))


def scan_orders(height: int, width: int, scan: str) -> torch.Tensor:
    """The orders in which a scan reads a `height` x `width` patch grid.

    Returns:
        `torch.LongTensor` of shape `(directions, height * width)`: row `k` lists the raster indices (`row * width +
        column`) of the patches in the order direction `k` reads them.
    """
    if scan not in SCAN_DIRECTIONS:
        raise ValueError(f"Unknown scan {scan!r}; expected one of {', '.join(SCAN_DIRECTIONS)}.")
    raster = torch.arange(height * width)
    if scan == "bidirectional":
        return torch.stack([raster, raster.flip(0)])
    columns = raster.view(height, width).t().reshape(-1)
    return torch.stack([raster, columns, raster.flip(0), columns.flip(0)])


def cross_scan(features: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """`(batch, patches, channels)` in raster order -> `(directions, batch, patches, channels)`, each direction's
    sequence in its own order."""
    return features[:, orders.to(features.device)].movedim(1, 0)


def cross_merge(sequences: torch.Tensor, orders: torch.Tensor, merge: str = "sum") -> torch.Tensor:
    """Inverse of `cross_scan` followed by the merge: `(directions, batch, patches, channels)` -> `(batch, patches,
    channels)` in raster order, the directions summed (`"sum"`) or averaged (`"mean"`)."""
    if merge not in VSS_MERGES:
        raise ValueError(f"Unknown merge {merge!r}; expected one of {', '.join(VSS_MERGES)}.")
    # Position of each raster patch in every direction's sequence.
    positions = orders.argsort(dim=1).to(sequences.device)
    restored = torch.stack([sequence[:, position] for sequence, position in zip(sequences, positions)])
    return restored.sum(0) if merge == "sum" else restored.mean(0)


def _mixer_config(hidden_size: int, config, num_layers: int) -> MambaConfig:
    return MambaConfig(
        hidden_size=hidden_size,
        state_size=config.vss_state_size,
        expand=config.vss_expand,
        conv_kernel=config.vss_conv_kernel,
        num_hidden_layers=num_layers,
        time_step_rank=math.ceil(hidden_size / 16),
        use_bias=False,
        use_conv_bias=True,
        hidden_act="silu",
        vocab_size=1,
    )


class VisionSelectiveScan(nn.Module):
    """The scan of a patch grid in several orders, each through a Mamba layer, merged back in raster order (module
    docstring). Keeps the shape: `(batch, patches, hidden_size)`."""

    def __init__(self, hidden_size: int, config):
        super().__init__()
        self.scan = config.vss_scan
        self.merge = config.vss_merge
        directions = SCAN_DIRECTIONS[self.scan]
        layers = 1 if config.vss_share_directions else directions
        self.mixer_config = _mixer_config(hidden_size, config, layers)
        self.mixers = nn.ModuleList(MambaMixer(self.mixer_config, layer_idx=index) for index in range(layers))
        self.conv = (
            nn.Conv2d(hidden_size, hidden_size, kernel_size=3, padding=1, groups=hidden_size)
            if config.vss_depthwise_conv
            else None
        )
        self._orders = {}

    def orders(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._orders:
            self._orders[key] = scan_orders(height, width, self.scan)
        return self._orders[key]

    def forward(self, features: torch.Tensor, patches_per_side: int) -> torch.Tensor:
        batch, patches, channels = features.shape
        if patches != patches_per_side * patches_per_side:
            raise ValueError(
                f"The vision scan reads a {patches_per_side}x{patches_per_side} patch grid; got {patches} patches."
            )
        if self.conv is not None:
            grid = features.transpose(1, 2).reshape(batch, channels, patches_per_side, patches_per_side)
            features = nn.functional.silu(self.conv(grid)).flatten(2).transpose(1, 2)
        orders = self.orders(patches_per_side, patches_per_side)
        sequences = cross_scan(features, orders)
        directions = sequences.shape[0]
        if len(self.mixers) == 1:
            outputs = self.mixers[0](sequences.reshape(directions * batch, patches, channels))
            outputs = outputs.view(directions, batch, patches, channels)
        else:
            outputs = torch.stack([mixer(sequence) for mixer, sequence in zip(self.mixers, sequences)])
        return cross_merge(outputs, orders, self.merge)


class VLMambaVSSMLPConnector(nn.Module):
    """VSS-MLP: `MLP(Norm(VSS(V) + V))`, the scan at the vision tower's width."""

    def __init__(self, vision_hidden_size: int, config):
        super().__init__()
        text_hidden_size = config.text_config.hidden_size
        self.vss = VisionSelectiveScan(vision_hidden_size, config)
        self.norm = nn.LayerNorm(vision_hidden_size, eps=config.vss_norm_eps)
        self.linear_1 = nn.Linear(vision_hidden_size, text_hidden_size, bias=config.connector_bias)
        self.act = ACT2FN[config.connector_hidden_act]
        self.linear_2 = nn.Linear(text_hidden_size, text_hidden_size, bias=config.connector_bias)

    def forward(self, image_features: torch.Tensor, patches_per_side: int | None = None) -> torch.Tensor:
        hidden = self.norm(self.vss(image_features, patches_per_side) + image_features)
        return self.linear_2(self.act(self.linear_1(hidden)))


class VLMambaVSSL2Connector(nn.Module):
    """VSS-L2: `V' = Linear(V)`, then `Linear(Norm(VSS(GELU(V')) + V'))`, the scan at the language model's width."""

    def __init__(self, vision_hidden_size: int, config):
        super().__init__()
        text_hidden_size = config.text_config.hidden_size
        self.linear_1 = nn.Linear(vision_hidden_size, text_hidden_size, bias=config.connector_bias)
        self.act = ACT2FN[config.connector_hidden_act]
        self.vss = VisionSelectiveScan(text_hidden_size, config)
        self.norm = nn.LayerNorm(text_hidden_size, eps=config.vss_norm_eps)
        self.linear_2 = nn.Linear(text_hidden_size, text_hidden_size, bias=config.connector_bias)

    def forward(self, image_features: torch.Tensor, patches_per_side: int | None = None) -> torch.Tensor:
        projected = self.linear_1(image_features)
        return self.linear_2(self.norm(self.vss(self.act(projected), patches_per_side) + projected))


__all__ = [
    "SCAN_DIRECTIONS",
    "VSS_MERGES",
    "scan_orders",
    "cross_scan",
    "cross_merge",
    "VisionSelectiveScan",
    "VLMambaVSSMLPConnector",
    "VLMambaVSSL2Connector",
]
