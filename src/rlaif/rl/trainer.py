"""The PPO loop: prompts -> rollout -> update, with logging, samples, checkpoints and resume.

Runs under `accelerate launch` as data parallel: each process samples and scores its own prompts,
and DDP averages the gradients. Only rank 0 writes files. Writes into the stage folder:
    metrics.jsonl   one line per PPO step (keys listed in docs/implementation_details.md, "rl metrics")
    samples.jsonl   a few prompts with responses and scores every `sample_steps` steps
    checkpoints/    see rlaif.rl.checkpoint
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from rlaif.artifacts import is_main_process
from rlaif.config import RLConfig
from rlaif.rl import NonFiniteLossError
from rlaif.rl.checkpoint import checkpoint_dirs, load_checkpoint, save_checkpoint
from rlaif.rl.policy import RLModels
from rlaif.rl.ppo import Rollout, ppo_update, rollout


def _fused_adam_supported(params: list[torch.Tensor]) -> bool:
    """Fused AdamW (one kernel for every tensor; 4x faster than the foreach loop on 270M CPU
    parameters, same math) where torch has it: floating-point CPU or CUDA tensors."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


class PPOTrainer:
    def __init__(
        self, models: RLModels, tokenizer, prompts: list[dict], rl: RLConfig, out_dir: Path, seed: int, accelerator
    ):
        self.models, self.tokenizer, self.prompts, self.rl = models, tokenizer, prompts, rl
        self.out_dir, self.seed, self.acc = Path(out_dir), seed, accelerator
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.global_batch = rl.rollout_batch_size * self.world
        self.num_steps = rl.total_episodes // self.global_batch
        ppo = rl.ppo
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
        # Explicit generators, one stream per process, saved in checkpoints: a resumed run draws
        # exactly the samples and minibatch orders an uninterrupted one would [D44].
        self.generators = {
            "sample": torch.Generator().manual_seed(seed * 7919 + 2 * self.rank),
            "shuffle": torch.Generator().manual_seed(seed * 7919 + 2 * self.rank + 1),
        }
        self.step = 0
        self.ckpt_root = self.out_dir / "checkpoints"

    # --- data ---
    def prompts_for(self, step: int) -> list[dict]:
        """This process's share of the global batch of `step`: a fixed function of (seed, step), so
        nothing about the data order has to be checkpointed. Prompts repeat, reshuffled, once used up."""
        n = len(self.prompts)
        out = []
        for i in range(self.rl.rollout_batch_size):
            g = step * self.global_batch + self.rank * self.rl.rollout_batch_size + i
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + g // n))
            out.append(self.prompts[order[g % n].item()])
        return out

    def encode(self, records: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"  # [D01]
        batch = self.tokenizer(
            [r["prompt"] for r in records], return_tensors="pt", padding=True, add_special_tokens=False
        )
        self.tokenizer.padding_side = side
        return batch.input_ids.to(self.acc.device), batch.attention_mask.to(self.acc.device)

    # --- loop ---
    def resume(self) -> int | None:
        """Load the newest complete checkpoint, if any, and drop log lines written after it."""
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
        if is_main_process():
            for name in ("metrics.jsonl", "samples.jsonl"):
                path = self.out_dir / name
                if path.exists():
                    rows = [r for r in read_log(path) if r["step"] <= self.step]
                    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return self.step

    def train(self, max_steps: int | None = None) -> dict:
        """Run PPO steps until the end (or `max_steps` more of them); returns the last step's metrics."""
        end = self.num_steps if max_steps is None else min(self.num_steps, self.step + max_steps)
        bar = tqdm(total=self.num_steps, initial=self.step, desc="ppo", unit="step", disable=not is_main_process())
        last: dict = {}
        while self.step < end:
            t0 = time.time()
            records = self.prompts_for(self.step)
            queries, query_mask = self.encode(records)
            self.model.eval()
            r = rollout(
                self.models,
                self.tokenizer,
                queries,
                query_mask,
                [x["prompt"] for x in records],
                self.rl,
                self.generators["sample"],
            )
            t1 = time.time()
            try:
                stats = ppo_update(
                    self.model,
                    self.optimizer,
                    self.scheduler,
                    self.acc,
                    r,
                    self.rl,
                    self.generators["shuffle"],
                    self.step,
                )
            except NonFiniteLossError as e:
                dirs = checkpoint_dirs(self.ckpt_root)
                kept = f"last good checkpoint kept: {dirs[-1]}" if dirs else "no checkpoint was saved before it"
                raise NonFiniteLossError(f"{e}; {kept}") from None
            self.step += 1
            last = self._log(r, stats, records, t0, t1, time.time())
            bar.update(1)
            bar.set_postfix(score=f"{last['objective/scores']:.3f}", kl=f"{last['objective/kl']:.3f}")
            if self.step % self.rl.save_steps == 0 and self.step < self.num_steps:
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
                    self.rl.save_total_limit,
                )
        bar.close()
        return last

    def _check_trainable_finite(self) -> None:
        for name, p in self.acc.unwrap_model(self.model).named_parameters():
            if p.requires_grad and not torch.isfinite(p).all():
                raise NonFiniteLossError(f"parameter {name} is not finite after PPO step {self.step}; not checkpointed")

    # --- logging ---
    def _log(self, r: Rollout, stats: dict, records: list[dict], t0: float, t1: float, t2: float) -> dict:
        mask = (~r.padding_mask).float()
        local = {  # per-episode quantities, averaged over every process's episodes
            "objective/scores": r.scores,
            "objective/raw_scores": r.raw_scores,
            "objective/kl": r.kl.sum(1),
            "objective/non_score_reward": (-self.rl.kl_coef * r.kl).sum(1),
            "objective/rlhf_reward": r.scores - self.rl.kl_coef * r.kl.sum(1),
            "response/length": mask.sum(1),
            "response/eos_rate": (r.responses == self.tokenizer.eos_token_id).any(1).float(),
            "val/values": (r.values * mask).sum(1) / mask.sum(1),
            "val/returns": (r.returns * mask).sum(1) / mask.sum(1),
        }
        row = {k: self.acc.gather(v.float()).mean().item() for k, v in local.items()}
        summed = self.acc.reduce(
            torch.tensor([stats[k] for k in sorted(stats)], device=self.acc.device), reduction="mean"
        )
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
        if is_main_process():
            with open(self.out_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            if self.step % self.rl.sample_steps == 0 or self.step == 1:
                with open(self.out_dir / "samples.jsonl", "a") as fh:
                    for i in range(min(self.rl.num_samples, len(records))):
                        fh.write(
                            json.dumps(
                                {
                                    "step": self.step,
                                    "id": records[i]["id"],
                                    "prompt": records[i]["prompt"],
                                    "response": r.texts[i],
                                    "ended_with_eos": bool((r.responses[i] == self.tokenizer.eos_token_id).any()),
                                    "score": r.raw_scores[i].item(),
                                    "kl": r.kl[i].sum().item(),
                                },
                                ensure_ascii=False,
                            )
                            + "\n"
                        )
        return row


def read_log(path: Path) -> list[dict]:
    """Rows of a JSONL log that a kill may have cut mid-line (the partial last line is dropped)."""
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]
