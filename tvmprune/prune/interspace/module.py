"""``InterspaceConv2d``: a KxK convolution whose filters live in a learned filter basis.

Interspace pruning (IP; Wimmer, Mehnert, Condurache, CVPR 2022, "Interspace Pruning:
Using Adaptive Filter Representations to Improve Training of Sparse CNNs") writes every
KxK filter of a layer as a linear combination of an adaptive filter basis (FB) of
``K² = KH*KW`` filters of size KHxKW::

    w[o, i] = sum_j c[o, i, j] * B[j]          (o: output channel, i: input channel of the group)

Followed here (the stored text of the paper we could read is its abstract and reviews,
which speak of "an underlying adaptive filter basis" per representation; the issue's
reading is one FB per layer): **one FB per layer, shared by all ``Cout x Cin`` filters**,
initialised to the spatial basis (``B[j]`` = the j-th unit KHxKW filter, row-major), so a
freshly converted layer computes exactly what the original conv did and pruning
coefficients of the spatial basis is standard unstructured pruning (SP). The coefficients
``c`` are what is pruned; unpruned coefficients and the FB are trained jointly.

Shapes: ``coefficients [Cout, Cin/groups, K²]``, ``basis [K², KH, KW]``, ``mask`` (bool
buffer, coefficients' shape; True = kept). The forward pass is a plain ``F.conv2d`` with the
reconstructed weight ``einsum("oij,jhw->oihw", c * mask, B)`` of PyTorch layout
``[Cout, Cin/groups, KH, KW]``. Multiplying by the mask inside the forward pass makes the
gradient of every pruned coefficient exactly zero, so SGD / Adam steps (momentum, weight
decay) keep a zeroed coefficient at zero while the basis changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UnsupportedLayerError

__all__ = ["InterspaceConv2d", "spatial_basis"]


def spatial_basis(kh: int, kw: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The identity filter basis ``[KH*KW, KH, KW]``: ``B[j]`` is 1 at ``(j // KW, j % KW)``."""
    return torch.eye(kh * kw, dtype=dtype).reshape(kh * kw, kh, kw)


class InterspaceConv2d(nn.Module):
    """A ``Conv2d`` (zero padding, any stride / dilation / groups) in interspace form.

    Build one from a trained conv with :meth:`from_conv`; :meth:`to_conv2d` gives back a
    plain ``nn.Conv2d`` holding the reconstructed (spatially dense) filters.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                 dilation: tuple[int, int] = (1, 1), groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        kh, kw = kernel_size
        if in_channels % groups or out_channels % groups:
            raise UnsupportedLayerError(f"channels {in_channels}->{out_channels} are not divisible by groups={groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (int(kh), int(kw))
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.groups = groups
        k2 = kh * kw
        self.coefficients = nn.Parameter(torch.zeros(out_channels, in_channels // groups, k2))
        self.basis = nn.Parameter(spatial_basis(kh, kw))
        self.register_buffer("mask", torch.ones(out_channels, in_channels // groups, k2, dtype=torch.bool))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "InterspaceConv2d":
        """The same function as ``conv``: coefficients = its weights in the spatial basis."""
        if not isinstance(conv, nn.Conv2d):
            raise UnsupportedLayerError(f"interspace form needs an nn.Conv2d, got {type(conv).__name__}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise UnsupportedLayerError(
                f"interspace form supports zero padding given as numbers, not padding={conv.padding!r} / "
                f"padding_mode={conv.padding_mode!r}")
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.groups, conv.bias is not None)
        w = conv.weight.detach()
        m = m.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            m.coefficients.copy_(w.reshape(m.coefficients.shape))
            if conv.bias is not None:
                m.bias.copy_(conv.bias.detach())
        return m

    @property
    def basis_size(self) -> int:
        """``K² = KH * KW``, the number of basis filters."""
        return self.kernel_size[0] * self.kernel_size[1]

    def masked_coefficients(self) -> torch.Tensor:
        """``c * mask``, ``[Cout, Cin/groups, K²]``."""
        return self.coefficients * self.mask.to(self.coefficients.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """Reconstructed filters ``[Cout, Cin/groups, KH, KW]`` (differentiable in c and B)."""
        return torch.einsum("oij,jhw->oihw", self.masked_coefficients(), self.basis)

    @torch.no_grad()
    def set_mask(self, keep: torch.Tensor) -> None:
        """Install a coefficient keep-mask (coefficients' shape) and zero the pruned coefficients."""
        keep = keep.to(self.mask.device).bool()
        if tuple(keep.shape) != tuple(self.mask.shape):
            raise UnsupportedLayerError(
                f"coefficient mask has shape {tuple(keep.shape)}, coefficients have {tuple(self.mask.shape)}")
        self.mask.copy_(keep)
        self.coefficients.mul_(keep.to(self.coefficients.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    @torch.no_grad()
    def to_conv2d(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the reconstructed filters (same function)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         self.dilation, self.groups, self.bias is not None)
        conv = conv.to(device=self.coefficients.device, dtype=self.coefficients.dtype)
        conv.weight.copy_(self.weight)
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        kept = int(self.mask.sum())
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, basis={self.basis_size} filters, "
                f"coefficients kept {kept}/{self.mask.numel()}")
