"""The RL stage keeps every model, generator and tensor on the device it was given [D50] (issue #11, 1).

A CUDA run fails where a CPU run does not: torch makes tensors and generators on its default device
(the CPU) unless told otherwise, and the stage computes on the GPU. On a CPU-only machine the same
situation is set up the other way round: the stage computes on the CPU (its accelerator's device),
torch's default device is `meta` while the stage's own loop runs, so a tensor made without a device
lands on `meta` and the first op that mixes it with the stage's tensors fails. Generators are made
on the CPU whatever the default device, so every generator rlaif creates is recorded with the device
it names; and every model the stage uses must have passed through the stage's accelerator. Under
RLAIF_DEVICE=cuda (scripts/gpu_check.sh) the same test runs with the stage on the GPU.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rlaif.cli import main
from rlaif.config import load_config

from .rl_upstream import make_upstream, stage_device_type

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "tldr" / "sff_validation_posts_250.jsonl"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"real TL;DR posts not found at {DATA}")
CONFIG = str(REPO / "configs" / "tiny.yaml")


TorchGenerator = torch.Generator  # the class itself; torch.Generator is replaced while the stage runs


class RecordingGenerator(TorchGenerator):
    """torch.Generator that notes the device each rlaif call names (None: none named)."""

    made: list[tuple[str | None, str]] = []

    def __new__(cls, device=None):
        caller = sys._getframe(1)
        if caller.f_globals.get("__name__", "").startswith("rlaif"):
            cls.made.append((None if device is None else str(torch.device(device)), caller.f_code.co_name))
        return TorchGenerator.__new__(cls) if device is None else TorchGenerator.__new__(cls, device=device)


def on_meta_default(fn):
    """Run `fn` with torch's default device set to `meta`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.device("meta"):
            return fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    "mode, lora_rm",
    [("lean", False), ("lean", True), ("standard", False)],
    ids=["lean-separate-rm", "lean-rm-adapter-on-policy-base", "standard"],
)
def test_every_model_generator_and_tensor_is_on_the_stage_device(tmp_path, monkeypatch, mode, lora_rm):
    import accelerate

    import rlaif.stages.rl as rl_stage
    from rlaif.rl.trainer import PPOTrainer

    accelerators = []

    class SpyAccelerator(accelerate.Accelerator):
        """The real accelerator, noting every model passed through it."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.models_seen: list[nn.Module] = []
            accelerators.append(self)

        def prepare_model(self, model, *args, **kwargs):
            self.models_seen.append(model)
            return super().prepare_model(model, *args, **kwargs)

    trainers = []
    real_init = PPOTrainer.__init__

    def init(self, *args, **kwargs):
        trainers.append(self)
        real_init(self, *args, **kwargs)

    args = [
        f"output_dir={tmp_path / 'run'}",
        f"rl.mode={mode}",
        "rl.total_episodes=8",  # 2 PPO steps of 4
        "rl.save_steps=1",  # a checkpoint after step 1
        "rl.heldout_posts=2",
    ]
    make_upstream(load_config(CONFIG, args), lora_rm=lora_rm)

    monkeypatch.setattr(accelerate, "Accelerator", SpyAccelerator)
    monkeypatch.setattr(torch, "Generator", RecordingGenerator)
    RecordingGenerator.made = []
    # the stage's own loop (models are loaded from disk before it, which `meta` forbids)
    monkeypatch.setattr(PPOTrainer, "__init__", on_meta_default(init))
    monkeypatch.setattr(PPOTrainer, "train", on_meta_default(PPOTrainer.train))
    monkeypatch.setattr(rl_stage, "heldout_kl", on_meta_default(rl_stage.heldout_kl))
    assert main(["rl", CONFIG, *[x for a in args for x in ("--set", a)]]) == 0

    (accelerator,) = accelerators
    device = accelerator.device
    assert device.type == stage_device_type()
    models = trainers[0].models
    # every model the stage uses passed through the accelerator, and sits on its device
    used = [("trainable", models.trainable)]
    if models.reference is not None:
        used.append(("reference", models.reference))
    used += [(f"reward.{k}", m) for k, m in vars(models.reward).items() if isinstance(m, nn.Module)]
    assert len(used) >= 2
    for name, module in used:
        assert any(module is seen or any(module is m for m in seen.modules()) for seen in accelerator.models_seen), (
            f"{name} ({type(module).__name__}) never passed through the accelerator"
        )
        wrong = {str(t.device) for t in [*module.parameters(), *module.buffers()] if t.device != device}
        assert not wrong, f"{name} has tensors on {wrong}, not on {device}"
    # every generator rlaif made names its device: the stage's, except the prompt order, drawn on the
    # CPU on purpose (the same prompts on every device)
    assert RecordingGenerator.made, "no generator was recorded"
    for named, where in RecordingGenerator.made:
        assert named is not None, f"{where}: torch.Generator() without a device (the CPU, whatever the stage's)"
        expected = "cpu" if where == "prompts_for" else str(device)
        assert named == expected, f"{where}: a generator on {named}, the stage computes on {device}"
    assert {g.device for g in trainers[0].generators.values()} == {device}
    out = tmp_path / "run" / "rl"
    assert (out / "model" / "config.json").exists() and (out / "heldout.jsonl").exists()
