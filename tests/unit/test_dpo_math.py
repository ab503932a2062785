"""DPO and best-of-n math against TRL's definitions, plain loops and hand-computed numbers. [P01]-[P06], [P11][P12]"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rlaif.best_of_n.selection import kl_bound, n_ladder, pick
from rlaif.dpo.losses import preference_stats, soft_dpo_loss
from rlaif.dpo.sequences import encode_pairs, pack, pair_logprobs, response_ids
from rlaif.dpo.trainer import step_indices, warmup_then_constant
from rlaif.models import embedded_folder, load_causal_lm, load_tokenizer

# --- TRL's DPO losses, written from their definitions in trl/trainer/dpo_trainer.py ----------------
# TRL 1.16.0, DPOTrainer._compute_loss: delta_score = chosen_logratios - rejected_logratios and, for
# loss_type "sigmoid", per_sequence_loss = -F.logsigmoid(self.beta * delta_score). In TRL 1.16,
# `label_smoothing` no longer enters "sigmoid" (only "robust", "exo_pair" and "aot*"); the
# label-smoothed (cDPO) sigmoid loss is TRL <= 0.28's: -logsigmoid(beta*logits) * (1 - label_smoothing)
# - logsigmoid(-beta*logits) * label_smoothing, logits = chosen_logratios - rejected_logratios.


def trl_sigmoid(chosen_logratios, rejected_logratios, beta):
    return -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))


def trl_label_smoothed_sigmoid(chosen_logratios, rejected_logratios, beta, label_smoothing):
    logits = chosen_logratios - rejected_logratios
    return -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing


LOGRATIO_A = torch.tensor([0.3, -1.2, 4.0, 0.0, -25.0, 60.0], dtype=torch.float64)
LOGRATIO_B = torch.tensor([-0.7, 0.5, 1.5, 0.0, 20.0, -60.0], dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_soft_loss_is_trl_sigmoid_at_hard_labels(beta):
    ones, zeros = torch.ones_like(LOGRATIO_A), torch.zeros_like(LOGRATIO_A)
    # p = 1: a is chosen; p = 0: b is chosen
    torch.testing.assert_close(
        soft_dpo_loss(LOGRATIO_A, LOGRATIO_B, ones, beta), trl_sigmoid(LOGRATIO_A, LOGRATIO_B, beta)
    )
    torch.testing.assert_close(
        soft_dpo_loss(LOGRATIO_A, LOGRATIO_B, zeros, beta), trl_sigmoid(LOGRATIO_B, LOGRATIO_A, beta)
    )


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.5])
def test_soft_loss_is_cdpo_label_smoothing_at_a_constant_label(eps):
    p = torch.full_like(LOGRATIO_A, 1 - eps)
    torch.testing.assert_close(
        soft_dpo_loss(LOGRATIO_A, LOGRATIO_B, p, 0.5), trl_label_smoothed_sigmoid(LOGRATIO_A, LOGRATIO_B, 0.5, eps)
    )


def test_soft_loss_hand_computed_and_finite():
    # D = 0: log 2 whatever the label
    p = torch.tensor([0.0, 0.3, 1.0])
    torch.testing.assert_close(soft_dpo_loss(torch.zeros(3), torch.zeros(3), p, 0.5), torch.full((3,), math.log(2)))
    # beta * D = ln 3: sigmoid = 3/4; p = 0.5 -> -(0.5 ln 0.75 + 0.5 ln 0.25) = 0.83699...
    got = soft_dpo_loss(torch.tensor([math.log(3)]), torch.zeros(1), torch.tensor([0.5]), 1.0)
    torch.testing.assert_close(got, torch.tensor([-(0.5 * math.log(0.75) + 0.5 * math.log(0.25))]))
    assert abs(got.item() - 0.836988) < 1e-6
    # huge margins stay finite (logsigmoid, never log(sigmoid))
    big = soft_dpo_loss(torch.tensor([1e4, -1e4]), torch.zeros(2), torch.tensor([0.7, 0.7]), 1.0)
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big, torch.tensor([0.3 * 1e4, 0.7 * 1e4]))


def test_soft_loss_gradient_vanishes_where_the_model_matches_the_label():
    """d loss / d D = beta (sigmoid(beta D) - p): the soft target is reached, not overshot."""
    p = torch.tensor([0.8, 0.8, 0.2])
    delta = torch.tensor([0.0, math.log(4) / 0.5, 1.0], requires_grad=True)  # sigmoid(0.5 * D) = 0.8 at the second
    soft_dpo_loss(delta, torch.zeros(3), p, 0.5).sum().backward()
    expected = 0.5 * (torch.sigmoid(0.5 * delta.detach()) - p)
    torch.testing.assert_close(delta.grad, expected)
    assert abs(delta.grad[1].item()) < 1e-7


def test_preference_stats_are_oriented_by_the_label():
    logps_a, logps_b = torch.tensor([-10.0, -10.0, -10.0]), torch.tensor([-12.0, -12.0, -12.0])
    ref_a, ref_b = torch.tensor([-11.0, -11.0, -11.0]), torch.tensor([-11.0, -11.0, -11.0])
    stats = preference_stats(logps_a, logps_b, ref_a, ref_b, torch.tensor([0.9, 0.1, 0.5]), beta=0.5)
    # implicit rewards: a = 0.5 * (+1) = 0.5, b = 0.5 * (-1) = -0.5
    torch.testing.assert_close(stats["rewards/chosen"], torch.tensor([0.5, -0.5, 0.5]))
    torch.testing.assert_close(stats["rewards/margins"], torch.tensor([1.0, -1.0, 1.0]))
    torch.testing.assert_close(stats["rewards/accuracies"], torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(stats["logps/rejected"], torch.tensor([-12.0, -10.0, -12.0]))
    torch.testing.assert_close(stats["decided"], torch.tensor([1.0, 1.0, 0.0]))


# --- sequence log-probs: the response-only head against the full logits, row by row ----------


@pytest.fixture(scope="module")
def tiny():
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder)
    return load_causal_lm(folder, tokenizer).eval(), tokenizer


PAIRS = [
    {"prompt": "POST: My cat sleeps all day and I worry.\n\nTL;DR:", "summary_a": "cat sleeps", "summary_b": "worried owner of a sleepy cat"},
    {"prompt": "SUBREDDIT: r/a\n\nPOST: short\n\nTL;DR:", "summary_a": "", "summary_b": "a short post about nothing at all really"},
]  # fmt: skip


def plain_logprob(model, prompt_ids, response) -> float:
    """Full-sequence logits, log-softmax, sum over the response tokens: the obvious way, one row at a time."""
    ids = torch.tensor([list(prompt_ids) + list(response)])
    logits = model(input_ids=ids).logits[0].double()  # (L, V)
    logps = torch.log_softmax(logits, dim=-1)
    start = len(prompt_ids)
    return sum(logps[start + t - 1, tok].item() for t, tok in enumerate(response))


def test_pair_logprobs_equal_a_plain_loop_over_full_logits(tiny):
    """The shared-prompt forward (prompt once, the two responses on its KV cache) and the response-only
    head give what each prompt + response row gives alone, with full logits. [P02]"""
    model, tokenizer = tiny
    encoded = encode_pairs(tokenizer, PAIRS, max_response_tokens=6)
    assert encoded[1].a == (tokenizer.eos_token_id,)  # an empty summary is just EOS
    assert len(encoded[1].b) == 7 and encoded[1].b[-1] == tokenizer.eos_token_id  # cut to 6, then EOS
    with torch.no_grad():
        got = pair_logprobs(model, pack(encoded, tokenizer.pad_token_id, "cpu"))
    expected = torch.tensor([[plain_logprob(model, p.prompt, r) for r in (p.a, p.b)] for p in encoded])
    assert got.dtype == torch.float32 and got.shape == (2, 2)
    torch.testing.assert_close(got, expected.float(), atol=1e-4, rtol=1e-5)


def test_gradients_flow_through_the_shared_prompt(tiny):
    """d/dW of the summed log-probs equals the gradient of the row-by-row computation."""
    _, tokenizer = tiny
    folder = str(embedded_folder("tiny-random"))
    encoded = encode_pairs(tokenizer, PAIRS, max_response_tokens=6)
    grads = []
    for shared in (True, False):
        model = load_causal_lm(folder, tokenizer)
        if shared:
            total = pair_logprobs(model, pack(encoded, tokenizer.pad_token_id, "cpu")).sum()
        else:
            total = sum(_row_logprob(model, p.prompt, r) for p in encoded for r in (p.a, p.b))
        total.backward()
        grads.append({n: w.grad.clone() for n, w in model.named_parameters() if w.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-4, rtol=1e-3)


def _row_logprob(model, prompt_ids, response) -> torch.Tensor:
    ids = torch.tensor([list(prompt_ids) + list(response)])
    logps = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    start = len(prompt_ids)
    return sum(logps[start + t - 1, tok] for t, tok in enumerate(response))


def test_response_ids_match_the_sft_target(tiny):
    _, tokenizer = tiny
    ids = response_ids(tokenizer, "  two words ", 53)
    assert list(ids) == tokenizer(" two words", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def test_lora_reference_is_the_adapter_switched_off(tiny):
    """A LoRA policy whose adapter has moved away from zero still gives the SFT log-probs with the adapter off. [P04]"""
    from rlaif.config import LoraSettings
    from rlaif.dpo.trainer import reference_of
    from rlaif.training import apply_lora

    model, tokenizer = tiny
    folder = str(embedded_folder("tiny-random"))
    torch.manual_seed(0)
    policy = apply_lora(load_causal_lm(folder, tokenizer), LoraSettings(enabled=True, r=4), task_type="CAUSAL_LM")
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    batch = pack(encode_pairs(tokenizer, PAIRS, 6), tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        moved = pair_logprobs(policy, batch)
        ref_model, context = reference_of(policy, None)
        with context:
            ref = pair_logprobs(ref_model, batch)
        base = pair_logprobs(model, batch)
    torch.testing.assert_close(ref, base)
    assert (moved - base).abs().max() > 1e-3


# --- schedule and data order ----------------------------------------------------------------


def test_warmup_then_constant_matches_the_reference_lambda():
    factor = warmup_then_constant(3)
    assert [factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_then_constant(0)(0) == 1.0


def test_step_indices_cover_every_item_once_per_pass_across_processes():
    n, world, per_rank, seed = 10, 2, 3, 5
    seen = []
    for step in range(5):  # 5 steps x 6 = 30 = 3 passes
        for rank in range(world):
            seen += step_indices(n, step, world * per_rank, rank, per_rank, seed)
    for p in range(3):
        assert sorted(seen[p * n : (p + 1) * n]) == list(range(n))
    assert seen[:n] != seen[n : 2 * n]  # a fresh permutation each pass
    assert step_indices(n, 3, 6, 1, 3, seed) == step_indices(n, 3, 6, 1, 3, seed)  # a function of (seed, step)


# --- best-of-n ------------------------------------------------------------------------------


def test_kl_bound_hand_computed():
    assert kl_bound(1) == 0.0
    assert abs(kl_bound(2) - (math.log(2) - 0.5)) < 1e-12
    assert abs(kl_bound(16) - 1.8350887222397811) < 1e-12
    with pytest.raises(ValueError):
        kl_bound(0)


def exact_best_of_n_kl(q: list[float], n: int) -> float:
    """KL(best-of-n || q) over outcomes ranked by a reward with no ties (index = rank, ascending):
    P(best-of-n = i) = F(i)^n - F(i-1)^n, F the cumulative probability; summed by a plain loop."""
    kl, cdf = 0.0, 0.0
    for qi in q:
        p = (cdf + qi) ** n - cdf**n
        kl += p * math.log(p / qi) if p > 0 else 0.0
        cdf += qi
    return kl


@pytest.mark.parametrize("n", [1, 2, 4, 16, 64])
def test_kl_bound_bounds_the_exact_kl_and_is_tight_for_many_outcomes(n):
    few = [0.5, 0.3, 0.2]
    many = [1 / 2000] * 2000
    assert exact_best_of_n_kl(few, n) <= kl_bound(n) + 1e-12
    assert exact_best_of_n_kl(many, n) <= kl_bound(n) + 1e-12
    assert kl_bound(n) - exact_best_of_n_kl(many, n) < 0.02  # Beirami et al.: the bound is the continuum limit


def test_picks_and_ladder():
    scores = [0.1, 0.5, 0.5, 0.9, -1.0]
    assert [pick(scores, k) for k in (1, 2, 3, 4, 5)] == [0, 1, 1, 3, 3]  # earliest wins a tie
    assert n_ladder(1) == [1] and n_ladder(16) == [1, 2, 4, 8, 16] and n_ladder(12) == [1, 2, 4, 8, 12]
    with pytest.raises(ValueError):
        pick(scores, 6)


def test_bfloat16_weights_give_float32_logprobs(tiny):
    """No silent dtype mixing: a bf16 policy's log-softmax is taken in float32 and the result is float32."""
    model, tokenizer = tiny
    folder = str(embedded_folder("tiny-random"))
    half = load_causal_lm(folder, tokenizer, dtype="bfloat16").eval()
    batch = pack(encode_pairs(tokenizer, PAIRS, 6), tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        got, full = pair_logprobs(half, batch), pair_logprobs(model, batch)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, full, atol=0.5, rtol=0.02)  # bf16 weights, float32 reductions
