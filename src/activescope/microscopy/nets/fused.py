"""N same-architecture U-Nets fused into ONE network of grouped convolutions.

Member ``k``'s channels occupy the ``k``-th block of every feature map (member-major layout), so
each convolution after the first is a grouped convolution (``groups = N`` x the member's own
groups) whose weights are the members' weights concatenated along the output axis. The first
convolution reads the shared input, so it is an ordinary convolution with ``N`` x the output
channels. Pooling, upsampling, ReLU and the dilated sum act per channel and keep the layout. A
decoder's first convolution reads ``[member k's decoder channels, member k's skip channels]``;
rather than interleaving the two maps per member (a full copy of both, measured to cost more than
the convolutions), it is split into two grouped convolutions, one on each map, whose outputs are
summed: the same linear map without the concatenation. One forward pass of the fused net therefore computes exactly what
the N members compute one by one, with one kernel launch per layer instead of N.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from activescope.engine.errors import DataError
from activescope.microscopy.nets.unet import UNet, unet_pass


def _grouped_conv(convs: Sequence[nn.Conv2d], shared_input: bool) -> nn.Conv2d:
    """One convolution computing every member's ``convs[k]`` on its own channel block.

    ``shared_input``: all members read the same input channels (the first layer), so the
    weights stack into an ordinary convolution with ``N`` x the output channels.
    """
    first = convs[0]
    n_members = len(convs)
    groups = first.groups if shared_input else first.groups * n_members
    in_channels = first.in_channels if shared_input else first.in_channels * n_members
    fused = nn.Conv2d(in_channels, first.out_channels * n_members, first.kernel_size,
                      stride=first.stride, padding=first.padding, dilation=first.dilation,
                      groups=groups, bias=first.bias is not None,
                      device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([conv.weight for conv in convs]))
        if first.bias is not None:
            fused.bias.copy_(torch.cat([conv.bias for conv in convs]))
    return fused


class _SkipConv(nn.Module):
    """A decoder's first convolution on ``[upsampled, skip]`` per member, without concatenating."""

    def __init__(self, convs: Sequence[nn.Conv2d], upsampled_channels: int) -> None:
        super().__init__()
        self.upsampled = _grouped_conv([_slice_input(conv, 0, upsampled_channels)
                                        for conv in convs], shared_input=False)
        self.skip = _grouped_conv([_slice_input(conv, upsampled_channels, conv.in_channels)
                                   for conv in convs], shared_input=False)
        self.skip.bias = None

    def forward(self, upsampled: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.upsampled(upsampled) + self.skip(skip)


def _slice_input(conv: nn.Conv2d, start: int, stop: int) -> nn.Conv2d:
    """The part of an ungrouped ``conv`` that reads input channels ``start:stop``."""
    part = nn.Conv2d(stop - start, conv.out_channels, conv.kernel_size, padding=conv.padding,
                     dilation=conv.dilation, bias=conv.bias is not None,
                     device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        part.weight.copy_(conv.weight[:, start:stop])
        if conv.bias is not None:
            part.bias.copy_(conv.bias)
    return part


class FusedUNet(nn.Module):
    """N batch-norm-folded ``UNet`` members as one network: images -> logits ``(B, N, C, H, W)``.

    Args:
        members: eval-mode members of one architecture with batch norm already folded into
            their convolutions (``find.predict.fuse_batchnorm``); their weights are copied.

    Raises ``DataError`` unless ``fusable(members)``.
    """

    def __init__(self, members: Sequence[UNet]) -> None:
        super().__init__()
        if not fusable(members):
            raise DataError("members cannot be fused: they must share one architecture, have "
                            "batch norm folded in and use no depthwise-separable convolutions")
        template = members[0]
        self.n_members = len(members)
        self.n_classes = template.n_classes
        self.space_to_depth = template.space_to_depth
        self.size_multiple = template.size_multiple
        first_conv = next(name for name, module in template.named_modules()
                          if isinstance(module, nn.Conv2d))
        for name in ("encoders", "bottleneck", "head"):
            setattr(self, name, copy.deepcopy(template.get_submodule(name)))
        for name, module in template.named_modules():
            if isinstance(module, nn.Conv2d) and not name.startswith("decoders"):
                convs = [member.get_submodule(name) for member in members]
                self.set_submodule(name, _grouped_conv(convs, shared_input=name == first_conv))
        self.skip_convs = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for index, block in enumerate(template.decoders):
            blocks = [member.decoders[index] for member in members]
            # A decoder outputs as many channels as its skip map holds (UNet's widths[k]).
            self.skip_convs.append(_SkipConv([b[0] for b in blocks],
                                             block[0].in_channels - block[0].out_channels))
            rest = [_grouped_conv([b[position] for b in blocks], shared_input=False)
                    if isinstance(module, nn.Conv2d) else copy.deepcopy(module)
                    for position, module in enumerate(block) if position > 0]
            self.decoders.append(nn.Sequential(*rest))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, H, W)`` -> every member's logits ``(B, N, C, H, W)``."""
        decode_steps = [lambda up, skip, merge=merge, block=block: block(merge(up, skip))
                        for merge, block in zip(self.skip_convs, self.decoders)]
        logits = unet_pass(x, self.encoders, self.bottleneck, decode_steps, self.head,
                           self.space_to_depth)
        return logits.unflatten(1, (self.n_members, self.n_classes))


def fusable(members: Sequence[nn.Module]) -> bool:
    """Whether ``FusedUNet`` can fuse these members: plain ``UNet``s of one architecture with
    batch norm folded away and no depthwise-separable convolutions."""
    if len(members) < 1 or not all(type(member) is UNet for member in members):
        return False
    shapes = [{k: v.shape for k, v in member.state_dict().items()} for member in members]
    if any(shape != shapes[0] for shape in shapes[1:]):
        return False
    if any(isinstance(module, nn.BatchNorm2d) for module in members[0].modules()):
        return False
    return all(module.groups == 1 for module in members[0].modules()
               if isinstance(module, nn.Conv2d))
