"""Reward sources for PPO: the trained reward model read on the rollout's own token ids.

A reward source is called as `reward(query_responses, attention_mask, last_index, prompts,
responses)` and returns one score per row, (B,). The RM reads the ids (policy and RM share the
tokenizer, as in the reference code), at `last_index`, the EOS or the last token [D03]; its
`config.reward_bias` is added, as `rlaif.reward.model.score` does [D19]. In lean mode, an RM that was LoRA-trained on the
SFT model runs as a second adapter on the policy's base (SharedBaseReward). d-RLAIF's direct
reward (DirectReward) asks the rating judge of rlaif.labelers.rating, on any labeler backend.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from rlaif.config import LabelerSettings, RLConfig
from rlaif.labelers.prompts import rating_prompt
from rlaif.labelers.rating import RatingJudge
from rlaif.models import disable_dropout
from rlaif.reward.model import score as score_texts
from rlaif.rl.policy import head_values, last_hidden


class RewardModelReward:
    """The frozen RM as a reward source."""

    def __init__(self, model: nn.Module, rm_tokenizer, policy_tokenizer, batch_size: int):
        self.model, self.tokenizer, self.batch_size = model, rm_tokenizer, batch_size
        self.bias = float(getattr(model.config, "reward_bias", 0.0) or 0.0)
        self.max_length = getattr(model.config, "reward_max_length", None)
        # Reading ids needs the same token ids on both sides; otherwise score the decoded text.
        self.same_vocab = (
            rm_tokenizer.get_vocab() == policy_tokenizer.get_vocab()
            and rm_tokenizer.eos_token_id == policy_tokenizer.eos_token_id
        )

    @torch.no_grad()
    def __call__(
        self,
        query_responses: torch.Tensor,
        attention_mask: torch.Tensor,
        last_index: torch.Tensor,
        prompts: list[str],
        responses: list[str],
        context_length: int = 0,
        group_size: int = 1,
    ) -> torch.Tensor:
        too_long = self.max_length is not None and query_responses.size(1) > self.max_length
        if not self.same_vocab or too_long:
            # the text API cuts over-long inputs from the start, as the RM was trained
            return score_texts(self.model, self.tokenizer, prompts, responses, self.batch_size).to(
                query_responses.device
            )
        scores, k = [], whole_runs(group_size, self.batch_size)
        for start in range(0, query_responses.size(0), self.batch_size):
            sl = slice(start, start + self.batch_size)
            hidden = last_hidden(self.model, query_responses[sl], attention_mask[sl], context_length, k)  # (b, L, H)
            rows = torch.arange(hidden.size(0), device=hidden.device)
            scores.append(head_values(self.model.score, hidden[rows, last_index[sl]]))  # (b,)
        return torch.cat(scores) + self.bias


class DirectReward:
    """d-RLAIF as a reward source: the AI labeler's 1-10 rating of each response's text, rescaled
    to [-1, 1] [D45]. The rating judge is rlaif.labelers.rating; any labeler backend works."""

    def __init__(self, settings: LabelerSettings, section: RLConfig | None = None, judge: RatingJudge | None = None):
        """`settings`: the labeler; `section`: the rl config, for its rating prompt (rl.direct_prompt_file,
        rl.direct_discourage_length); None = the built-in prompt."""
        if judge is None:
            prompt = rating_prompt(section or RLConfig(), settings.max_rationale_tokens)
            judge = RatingJudge(settings, prompt)
        self.judge = judge

    def score_probs(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """(B, 10) probabilities of the scores 1..10."""
        return self.judge.score_probs(prompts, responses)

    def __call__(
        self,
        query_responses: torch.Tensor,
        attention_mask: torch.Tensor,
        last_index: torch.Tensor,
        prompts: list[str],
        responses: list[str],
        context_length: int = 0,
        group_size: int = 1,
    ) -> torch.Tensor:
        return self.judge.scores(prompts, responses).to(query_responses.device)


# ----------------------------------------------------------------------------------------------
# lean mode: a LoRA-trained RM runs on the policy's own frozen base [D40]

REWARD_ADAPTER = "reward"
RM_HEAD_KEY = "base_model.model.score.weight"  # the score head in a sequence-classification adapter


def shared_base_adapter(rm_path: str, sft_path: str) -> Path | None:
    """<reward stage>/adapter/ when the RM was LoRA-trained on exactly this SFT model (the reward
    stage saves the adapter beside the merged model/); None otherwise."""
    adapter = Path(rm_path).parent / "adapter"
    config = adapter / "adapter_config.json"
    if not (config.exists() and (adapter / "adapter_model.safetensors").exists()):
        return None
    base = json.loads(config.read_text()).get("base_model_name_or_path") or ""
    return adapter if base and Path(base).resolve() == Path(sft_path).resolve() else None


class SharedBaseReward:
    """The RM as a second, frozen LoRA adapter on the lean policy's base, with its own score head:
    no second copy of the base in memory. Its forward switches the active adapter to the RM's and
    back (peft set_adapter; the policy adapter's requires_grad is restored with it)."""

    def __init__(self, policy: nn.Module, adapter_dir: Path, rm_config, batch_size: int):
        from peft import LoraConfig
        from peft.utils import set_peft_model_state_dict

        self.policy, self.batch_size = policy, batch_size
        self.policy_adapter = policy.active_adapter
        config = LoraConfig.from_pretrained(str(adapter_dir))
        config.task_type, config.modules_to_save, config.inference_mode = "CAUSAL_LM", None, True
        policy.add_adapter(REWARD_ADAPTER, config)
        weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
        head = weights.pop(RM_HEAD_KEY)
        result = set_peft_model_state_dict(policy, weights, adapter_name=REWARD_ADAPTER)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(
                f"{adapter_dir}: adapter weights that fit no layer of the SFT model: {result.unexpected_keys[:3]}"
            )
        for name, p in policy.named_parameters():
            if f".{REWARD_ADAPTER}." in name:
                p.requires_grad_(False)
        disable_dropout(policy)
        # float32 whatever the base's dtype (head_values casts the hidden states to it); placed on the
        # run's device by rlaif.rl.build with the other frozen models
        self.score = nn.Linear(head.shape[1], 1, bias=False)
        with torch.no_grad():
            self.score.weight.copy_(head.float())
        self.score.requires_grad_(False)
        self.bias = float(getattr(rm_config, "reward_bias", 0.0) or 0.0)

    @contextlib.contextmanager
    def _active(self):
        self.policy.base_model.set_adapter(REWARD_ADAPTER, inference_mode=True)
        try:
            yield
        finally:
            self.policy.base_model.set_adapter(self.policy_adapter)

    @torch.no_grad()
    def __call__(
        self,
        query_responses: torch.Tensor,
        attention_mask: torch.Tensor,
        last_index: torch.Tensor,
        prompts: list[str],
        responses: list[str],
        context_length: int = 0,
        group_size: int = 1,
    ) -> torch.Tensor:
        scores, k = [], whole_runs(group_size, self.batch_size)
        with self._active():
            for start in range(0, query_responses.size(0), self.batch_size):
                sl = slice(start, start + self.batch_size)
                hidden = last_hidden(self.policy, query_responses[sl], attention_mask[sl], context_length, k)
                rows = torch.arange(hidden.size(0), device=hidden.device)
                scores.append(head_values(self.score, hidden[rows, last_index[sl]]))  # (b,)
        return torch.cat(scores) + self.bias


def whole_runs(group_size: int, batch_size: int) -> int:
    """The group size a chunk of `batch_size` rows can share prompts by: only whole runs of a prompt's
    samples fit in every chunk; else 1 (no sharing)."""
    return group_size if group_size > 1 and batch_size % group_size == 0 else 1
