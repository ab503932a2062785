"""PPO checkpoints: rl/checkpoints/step-<N>/ with everything a resumed run needs to continue
exactly as an uninterrupted one would [D44].

    trainable.safetensors   the parameters the optimizer updates (all of them, or adapter + value head)
    optimizer.pt            AdamW moments and step counts
    scheduler.pt            learning-rate schedule position
    rng-<rank>.pt           each process's sampling and shuffling generators
    state.json              step, episodes, processes

A checkpoint is written into a temporary folder and renamed when complete, so a kill mid-write
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rlaif.artifacts import atomic_write_text, barrier, is_main_process


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    dirs = [p for p in root.glob("step-*") if p.is_dir() and (p / "state.json").exists() and p.name[5:].isdigit()]
    return sorted(dirs, key=lambda p: int(p.name[5:]))


def save_checkpoint(
    root: Path,
    step: int,
    module: torch.nn.Module,
    optimizer,
    scheduler,
    generators: dict[str, torch.Generator],
    rank: int,
    world_size: int,
    keep: int,
) -> Path:
    final = root / f"step-{step}"
    tmp = root / f".step-{step}.tmp"
    if is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save({name: g.get_state() for name, g in generators.items()}, tmp / f"rng-{rank}.pt")
    if is_main_process():
        state = {n: p.detach().contiguous() for n, p in module.named_parameters() if p.requires_grad}
        save_file(state, str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    barrier()  # every rank's RNG file is in before the folder counts as complete
    if is_main_process():
        atomic_write_text(tmp / "state.json", json.dumps({"step": step, "processes": world_size}) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(
    path: Path,
    module: torch.nn.Module,
    optimizer,
    scheduler,
    generators: dict[str, torch.Generator],
    rank: int,
    world_size: int,
) -> int:
    """Restore everything saved in `path`; returns the step it was saved after."""
    state = json.loads((path / "state.json").read_text())
    if state["processes"] != world_size:
        raise RuntimeError(
            f"{path} was written by {state['processes']} process(es), this run has {world_size}; resume with "
            f"the same number of processes (or delete {path.parent} to start over)"
        )
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(module.named_parameters())
    missing = sorted(set(n for n, p in params.items() if p.requires_grad) - set(weights))
    if missing:
        raise RuntimeError(
            f"{path}: trainable.safetensors lacks {missing[:3]}; was it written by another rl.mode or an older "
            f"rlaif (before the value head had a bias [D49])? Delete {path.parent} to start over"
        )
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = torch.load(path / f"rng-{rank}.pt", weights_only=True)
    for name, generator in generators.items():
        generator.set_state(rng[name])
    return int(state["step"])
