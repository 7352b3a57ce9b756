import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run via the device tool)")
    for item in items:
        if item.get_closest_marker("gpu"):  # the marker, not the tests/gpu folder name
            item.add_marker(skip)


@pytest.fixture
def write_yaml(tmp_path):
    def write(name: str, text: str) -> pathlib.Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


os.environ.setdefault("MPLBACKEND", "Agg")
if not _has_cuda():
    # Triton kernels run on the CPU through its interpreter (set before any kernel is defined)
    os.environ.setdefault("TRITON_INTERPRET", "1")
