"""Shared test fixtures: repository paths, the real data folder, and tiny-preset configs in tmp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlaif.config import load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests never reach the Hub: fail fast instead of waiting on network timeouts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_sessionstart(session):
    """RLAIF_DEVICE=cuda (scripts/gpu_check.sh) puts every stage on the GPU: without one, stop at once
    rather than test the CPU under the GPU's name."""
    if os.environ.get("RLAIF_DEVICE"):
        from rlaif.models import compute_device

        print(f"rlaif stages compute on {compute_device()} (RLAIF_DEVICE={os.environ['RLAIF_DEVICE']})")


needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "tldr").is_dir(),
    reason=f"real data folder {SHARED_DATA} is absent (it sits beside the repository as ../shared/data)",
)


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    """Config paths (../shared/data/...) are relative to the repository root, as in the README."""
    monkeypatch.chdir(REPO)


@pytest.fixture
def tiny_config(tmp_path):
    """Load configs/tiny.yaml with its output in a fresh temp folder; extra overrides as arguments."""

    def load(*overrides: str):
        return load_config(REPO / "configs" / "tiny.yaml", [f"output_dir={tmp_path / 'run'}", *overrides])

    return load
