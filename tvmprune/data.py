"""Built-in small model (and, later, data set) for the default job and the tests."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """A small residual CNN for 1x1x16x16 .. 1x3x32x32 inputs (tests, default job).

    Layout: conv3x3(Cin->16)+BN+ReLU, a residual block of two 3x3 convs (16->16),
    a stride-2 3x3 conv (16->32)+BN+ReLU, a 1x1 conv (32->32)+ReLU, global average
    pool, linear(32->num_classes).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(32, 32, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = torch.relu(x + y)
        x = self.pw(self.down(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class DigitsCNN(nn.Module):
    """A small CNN for the built-in 16x16 grey digits (input ``Nx1x16x16``, 10 classes).

    Wide enough (32-64 channels) that 1x4 / 1x8 / 1x16 blocks along the output channels
    make sense, small enough to train in seconds on two cores:
    conv3x3(1->32)+BN+ReLU @16x16, maxpool -> 8x8, conv3x3(32->64)+BN+ReLU,
    a residual block of two 3x3 convs (64->64), maxpool -> 4x4, conv3x3(64->64)+BN+ReLU,
    global average pool, linear(64->num_classes).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.res1 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn_res1 = nn.BatchNorm2d(64)
        self.res2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn_res2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.pool(self.stem(x)))
        y = torch.relu(self.bn_res1(self.res1(x)))
        x = torch.relu(x + self.bn_res2(self.res2(y)))
        x = self.conv3(self.pool(x))
        return self.fc(torch.flatten(self.gap(x), 1))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs + BN, identity or 1x1-conv+BN shortcut, ReLU after the add."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(y + shortcut)


class DigitsResNet(nn.Module):
    """A small ResNet for the built-in 16x16 grey digits (input ``Nx1x16x16``, 10 classes).

    Residual ("highway") channels and whole blocks are what channel-gating methods
    (``gator@``) prune, so this net has three stages of basic blocks:
    stem conv3x3(1->16)+BN+ReLU @16x16; stage 1: 2 blocks 16 ch @16x16; stage 2: 2 blocks
    32 ch @8x8 (first block stride 2 with a 1x1 downsample); stage 3: 2 blocks 64 ch @4x4
    (same); global average pool; linear(64->num_classes).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64),
                 blocks: int = 2) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"DigitsResNet has three stages: give three widths, got {widths}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages = []
        cin = widths[0]
        for i, w in enumerate(widths):
            layers = [BasicBlock(cin, w, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(w, w) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.layer1, self.layer2, self.layer3 = stages
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.gap(x), 1))
