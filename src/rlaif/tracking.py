"""Optional experiment tracking: TensorBoard, Weights & Biases or Trackio, chosen by `logging.backend`.

The files under runs/<name>/ are the record of a run; a tracker only mirrors metrics to a dashboard,
so it is never required. Each backend's package is imported only when chosen, and only rank 0 logs.
Keys are flattened with `/` (`evaluate/rl:sft/win_rate`); non-numeric values are left out.

    with start_tracking(cfg, "rl") as tracker:
        tracker.log({"rl/objective/kl": 0.1}, step=3)
"""

from __future__ import annotations

import importlib
from typing import Any

from rlaif.artifacts import is_main_process
from rlaif.config import ConfigError, PipelineConfig, to_dict

INSTALL = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    """{"a": {"b": 1.0, "c": "x"}} -> {"a/b": 1.0}: numbers only, nested keys joined by '/'."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


class Tracker:
    """No-op tracker (backend `none`, and every rank but 0); the backends override the three hooks."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_summary(self, stage: str, metrics: dict) -> None:
        """A stage's final metrics.json, flattened under the stage name."""
        flat = flatten(metrics, stage)
        if flat:
            self.log(flat)

    def close(self) -> None:
        pass


class _TensorBoard(Tracker):
    def __init__(self, cfg: PipelineConfig, stage: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(cfg.run_dir / "tensorboard" / stage))
        self.step = 0

    def log(self, metrics, step=None):
        step = self.step if step is None else step
        for key, value in flatten(metrics).items():
            self.writer.add_scalar(key, value, step)
        self.step = step + 1

    def close(self):
        self.writer.close()


class _WandbLike(Tracker):
    """wandb and trackio share init(project, name, config) / log(metrics, step) / finish()."""

    def __init__(self, module, cfg: PipelineConfig, stage: str):
        self.module = module
        # The API key is read by the library from the environment (WANDB_API_KEY); never passed here.
        self.run = module.init(project=cfg.logging.project, name=f"{cfg.name}-{stage}", config=to_dict(cfg))

    def log(self, metrics, step=None):
        self.module.log(flatten(metrics), step=step)

    def close(self):
        self.module.finish()


def start_tracking(cfg: PipelineConfig, stage: str) -> Tracker:
    """The tracker `logging.backend` names, or the no-op one."""
    backend = cfg.logging.backend
    if backend == "none" or not is_main_process():
        return Tracker()
    try:
        if backend == "tensorboard":
            return _TensorBoard(cfg, stage)
        return _WandbLike(importlib.import_module(backend), cfg, stage)
    except ImportError as e:
        raise ConfigError(f"logging.backend: {backend!r} needs `pip install {INSTALL[backend]}` ({e})") from None


def log_rows(cfg: PipelineConfig, stage: str, rows: list[dict[str, Any]], step_key: str = "step") -> None:
    """Mirror already-written metric rows (e.g. a stage's metrics.jsonl) to the tracker in one go."""
    with start_tracking(cfg, stage) as tracker:
        for row in rows:
            tracker.log({k: v for k, v in row.items() if k != step_key}, step=row.get(step_key))
