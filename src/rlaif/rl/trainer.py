"""The RL loop of PPO, RLOO and GRPO: prompts -> rollout -> update, with logging, samples,
snapshots, checkpoints and resume.

Runs under `accelerate launch` as data parallel: each process samples and scores its own prompts
(all k samples of each, so a group never spans processes [D51]), and DDP averages the gradients.
Only rank 0 writes files. Writes into the stage folder:
    metrics.jsonl   one line per step (keys listed in docs/implementation_details.md, "rl metrics")
    samples.jsonl   a few prompts with responses and scores every `sample_steps` steps
    trajectory/     `snapshots` evenly spaced policies, for the frontier stage [D55]
    checkpoints/    see rlaif.rl.checkpoint
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from rlaif.artifacts import is_main_process
from rlaif.config import RLConfig
from rlaif.jsonl import AppendLog
from rlaif.models import encode_left, save_snapshot_at, snapshot_steps
from rlaif.rl import NonFiniteLossError
from rlaif.rl.checkpoint import checkpoint_dirs, load_checkpoint, save_checkpoint
from rlaif.rl.critic_free import group_rollout, group_update
from rlaif.rl.policy import RLModels
from rlaif.rl.ppo import Rollout, ppo_update, rollout

# algorithm -> (rollout, update): PPO's critic and GAE, or RLOO's / GRPO's group advantages [D51]
ALGORITHMS = {
    "ppo": (rollout, ppo_update),
    "rloo": (group_rollout, group_update),
    "grpo": (group_rollout, group_update),
}


def _fused_adam_supported(params: list[torch.Tensor]) -> bool:
    """Fused AdamW (one kernel for every tensor; 4x faster than the foreach loop on 270M CPU
    parameters, same math) where torch has it: floating-point CPU or CUDA tensors."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


class PPOTrainer:
    """The loop of one RL stage; `settings.algorithm` picks PPO, RLOO or GRPO."""

    def __init__(
        self,
        models: RLModels,
        tokenizer,
        prompts: list[dict],
        settings: RLConfig,
        out_dir: Path,
        seed: int,
        accelerator,
    ):
        self.models, self.tokenizer, self.prompts, self.settings = models, tokenizer, prompts, settings
        self.out_dir, self.seed, self.acc = Path(out_dir), seed, accelerator
        self.device = accelerator.device
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.group_size = settings.group_size
        self.global_prompts = settings.rollout_batch_size * self.world  # prompts per step
        self.global_batch = self.global_prompts * self.group_size  # episodes (samples) per step
        self.num_steps = settings.total_episodes // self.global_batch
        self.rollout_fn, self.update_fn = ALGORITHMS[settings.algorithm]
        self.snapshot_steps = snapshot_steps(self.num_steps, settings.snapshots)
        ppo = settings.ppo
        params = [p for p in models.trainable.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=ppo.learning_rate,
            eps=ppo.adam_eps,
            weight_decay=ppo.weight_decay,  # [D13]
            fused=_fused_adam_supported(params),
        )
        self.scheduler = get_scheduler(
            ppo.lr_scheduler_type,
            optimizer,
            num_warmup_steps=0,
            num_training_steps=self.num_steps * ppo.ppo_epochs * ppo.num_minibatches,
        )
        self.model, self.optimizer = accelerator.prepare(models.trainable, optimizer)  # DDP when launched
        # Explicit generators on the run's device (torch.multinomial draws on the logits' device), one
        # stream per process, saved in checkpoints: a resumed run draws exactly the samples and
        # minibatch orders an uninterrupted one would [D44].
        self.generators = {
            "sample": torch.Generator(device=self.device).manual_seed(seed * 7919 + 2 * self.rank),
            "shuffle": torch.Generator(device=self.device).manual_seed(seed * 7919 + 2 * self.rank + 1),
        }
        self.step = 0
        self.ckpt_root = self.out_dir / "checkpoints"

    # --- data ---
    def prompts_for(self, step: int) -> list[dict]:
        """This process's share of the global batch of `step` (its distinct prompts; train() repeats
        each group_size times): a fixed function of (seed, step), so nothing about the data order has
        to be checkpointed. Prompts repeat, reshuffled, once used up. Drawn on the CPU on purpose:
        the same prompts on every device."""
        n = len(self.prompts)
        out = []
        for i in range(self.settings.rollout_batch_size):
            g = step * self.global_prompts + self.rank * self.settings.rollout_batch_size + i
            order_rng = torch.Generator(device="cpu").manual_seed(self.seed + g // n)
            order = torch.randperm(n, generator=order_rng, device="cpu")
            out.append(self.prompts[order[g % n].item()])
        return out

    # --- loop ---
    def resume(self) -> int | None:
        """Load the newest complete checkpoint, if any (train() then drops log lines written after it)."""
        dirs = checkpoint_dirs(self.ckpt_root)
        if not dirs:
            return None
        self.step = load_checkpoint(
            dirs[-1],
            self.acc.unwrap_model(self.model),
            self.optimizer,
            self.scheduler,
            self.generators,
            self.rank,
            self.world,
        )
        return self.step

    @contextlib.contextmanager
    def _open_logs(self):
        """(metrics log, samples log) of rank 0, opened for appending, (None, None) elsewhere. Rows of
        steps after self.step (written by a run killed after its last checkpoint) are dropped first,
        so a resumed run's logs equal an uninterrupted run's [D44]."""
        if not is_main_process():
            yield None, None
            return
        keep = lambda row: row["step"] <= self.step
        with (
            AppendLog(self.out_dir / "metrics.jsonl", keep=keep) as metrics_log,
            AppendLog(self.out_dir / "samples.jsonl", keep=keep) as samples_log,
        ):
            yield metrics_log, samples_log

    def train(self, max_steps: int | None = None) -> dict:
        """Run steps until the end (or `max_steps` more of them); returns the last step's metrics."""
        end = self.num_steps if max_steps is None else min(self.num_steps, self.step + max_steps)
        bar = tqdm(
            total=self.num_steps,
            initial=self.step,
            desc=self.settings.algorithm,
            unit="step",
            disable=not is_main_process(),
        )
        last: dict = {}
        with self._open_logs() as (metrics_log, samples_log):
            while self.step < end:
                t0 = time.time()
                # each prompt group_size times in a row: the rows of a group are consecutive [D51]
                records = [r for r in self.prompts_for(self.step) for _ in range(self.group_size)]
                batch = encode_left(self.tokenizer, [x["prompt"] for x in records], self.device)  # [D01]
                self.model.eval()
                rollout_batch = self.rollout_fn(
                    self.models,
                    self.tokenizer,
                    batch.input_ids,
                    batch.attention_mask,
                    [x["prompt"] for x in records],
                    self.settings,
                    self.generators["sample"],
                )
                t1 = time.time()
                try:
                    stats = self.update_fn(
                        self.model,
                        self.optimizer,
                        self.scheduler,
                        self.acc,
                        rollout_batch,
                        self.settings,
                        self.generators["shuffle"],
                        self.step,
                    )
                except NonFiniteLossError as e:
                    dirs = checkpoint_dirs(self.ckpt_root)
                    kept = f"last good checkpoint kept: {dirs[-1]}" if dirs else "no checkpoint was saved before it"
                    raise NonFiniteLossError(f"{e}; {kept}") from None
                self.step += 1
                last = self._log(rollout_batch, stats, records, t0, t1, time.time(), metrics_log, samples_log)
                bar.update(1)
                bar.set_postfix(score=f"{last['objective/scores']:.3f}", kl=f"{last['objective/kl']:.3f}")
                save_snapshot_at(self._policy(), self.out_dir / "trajectory", self.step, self.snapshot_steps)
                if self.step % self.settings.save_steps == 0 and self.step < self.num_steps:
                    self._check_trainable_finite()
                    save_checkpoint(
                        self.ckpt_root,
                        self.step,
                        self.acc.unwrap_model(self.model),
                        self.optimizer,
                        self.scheduler,
                        self.generators,
                        self.rank,
                        self.world,
                        self.settings.save_total_limit,
                    )
        bar.close()
        return last

    def _policy(self):
        """The policy being trained (a peft model in lean mode: its snapshot is the adapter)."""
        return self.acc.unwrap_model(self.model).policy

    def _check_trainable_finite(self) -> None:
        for name, p in self.acc.unwrap_model(self.model).named_parameters():
            if p.requires_grad and not torch.isfinite(p).all():
                raise NonFiniteLossError(
                    f"parameter {name} is not finite after {self.settings.algorithm.upper()} step {self.step}; "
                    "not checkpointed"
                )

    # --- logging ---
    def _log(
        self,
        batch: Rollout,
        stats: dict,
        records: list[dict],
        t0: float,
        t1: float,
        t2: float,
        metrics_log: AppendLog | None,
        samples_log: AppendLog | None,
    ) -> dict:
        mask = (~batch.padding_mask).float()
        local = {  # per-episode quantities, averaged over every process's episodes
            "objective/scores": batch.scores,
            "objective/raw_scores": batch.raw_scores,
            "objective/kl": batch.kl.sum(1),
            "objective/non_score_reward": (-self.settings.kl_coef * batch.kl).sum(1),
            "objective/rlhf_reward": batch.scores - self.settings.kl_coef * batch.kl.sum(1),
            "response/length": mask.sum(1),
            "response/eos_rate": (batch.responses == self.tokenizer.eos_token_id).any(1).float(),
        }
        if batch.values is not None:  # PPO's critic
            local["val/values"] = (batch.values * mask).sum(1) / mask.sum(1)
            local["val/returns"] = (batch.returns * mask).sum(1) / mask.sum(1)
        if self.group_size > 1:  # how far apart a prompt's samples score: no spread, no signal [D51]
            spread = batch.scores.view(-1, self.group_size).std(1)
            local["objective/group_score_std"] = spread.repeat_interleave(self.group_size)
        row = {k: self.acc.gather(v.float()).mean().item() for k, v in local.items()}
        summed = self.acc.reduce(torch.tensor([stats[k] for k in sorted(stats)], device=self.device), reduction="mean")
        row.update(dict(zip(sorted(stats), summed.tolist())))
        row.update(
            {
                "step": self.step,
                "episodes": self.step * self.global_batch,
                "lr": self.scheduler.get_last_lr()[0],
                "time/rollout_s": t1 - t0,
                "time/update_s": t2 - t1,
                "time/episodes_per_second": self.global_batch / (t2 - t0),
            }
        )
        if metrics_log is not None:
            metrics_log.append(row)
        if samples_log is not None and (self.step % self.settings.sample_steps == 0 or self.step == 1):
            for i in range(min(self.settings.num_samples, len(records))):
                samples_log.append(
                    {
                        "step": self.step,
                        "id": records[i]["id"],
                        "prompt": records[i]["prompt"],
                        "response": batch.texts[i],
                        "ended_with_eos": bool((batch.responses[i] == self.tokenizer.eos_token_id).any()),
                        "score": batch.raw_scores[i].item(),
                        "kl": batch.kl[i].sum().item(),
                    }
                )
        return row
