"""Small built-in architectures: fast enough for tests and demos on 2 CPU cores."""

from __future__ import annotations

from torch import nn


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyNet(nn.Module):
    """Conv-BN-ReLU x4 + global pool + linear head (about 30k parameters)."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, width, 1),
            _block(width, width * 2, 2),
            _block(width * 2, width * 4, 2),
            _block(width * 4, width * 4, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(width * 4, num_classes)

    def forward(self, x):  # noqa: ANN001, ANN201 - torch forward signature
        return self.classifier(self.features(x))


def tinynet(num_classes: int = 10) -> nn.Module:
    return TinyNet(num_classes=num_classes)
