"""Skip a test when OpenVINO is not installed, without importing it into the test process:
`import openvino` pulls in absl, whose logging handler keeps the sys.stderr of the moment
(pytest's capture of one test) and writes to it after it is closed, which later crashed the
suite. The engine itself always runs OpenVINO in a worker process."""

from __future__ import annotations

import importlib.util

import pytest


def skip_without_openvino() -> None:
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed (pip install 'sparsify[openvino]')")
