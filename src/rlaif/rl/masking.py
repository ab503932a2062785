"""Response post-processing and masked statistics.

Mask conventions (used across rlaif.rl):
    `padding_mask` (B, T) bool is True at padding, i.e. positions *after* the first EOS.
    `mask`         (B, T) bool/float is True (1) at real tokens, i.e. `~padding_mask`.
The EOS token itself is a real token: it is the action that ends the episode and the position
where the reward model is read [D03] and the score is added [D06].

Lengths and masks are keyed on the stop (EOS) token, not the pad token, so they stay correct when
a tokenizer reuses EOS as pad (GPT-2 / Pythia / SmolLM style). The reference instead adds a
separate [PAD] token and looks for the first pad.
"""

import torch


def first_true_indices(bools: torch.Tensor) -> torch.Tensor:
    """Index of the first True in each row of `bools` (B, T); T where a row has none. -> (B,)"""
    T = bools.size(-1)
    # non-True positions are pushed to >= T so the min lands on the first True, else on T
    idx = torch.arange(T, device=bools.device) + T * (~bools).long()  # (B, T)
    return idx.min(dim=-1).values


def truncate_response(responses: torch.Tensor, stop_token_id: int, pad_token_id: int) -> torch.Tensor:
    """Replace every token after the first stop token with pad; the stop token is kept. [D02]

    We sample a fixed `response_length` without stopping at EOS (so every rollout has the same
    shape), then cut here: whatever the policy wrote after EOS is not part of its summary.
    """
    stop = first_true_indices(responses == stop_token_id).unsqueeze(-1)  # (B, 1)
    idx = torch.arange(responses.size(1), device=responses.device)  # (T,)
    return responses.masked_fill(idx > stop, pad_token_id)  # (B, T)


def contains_eos(responses: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """(B,) bool: whether a response ever emits EOS; those that don't are penalised. [D04]"""
    return (responses == eos_token_id).any(dim=-1)


def sequence_lengths(responses: torch.Tensor, stop_token_id: int) -> torch.Tensor:
    """(B,) index of the last real token: the first EOS, or T-1 when there is none. [D03]

    Works on raw or truncated responses alike. A response without EOS is cut by the length
    limit, so its last token is where the score goes [D06] (after the missing-EOS penalty [D04]).
    """
    T = responses.size(1)
    return first_true_indices(responses == stop_token_id).clamp(max=T - 1)


def response_padding_mask(responses: torch.Tensor, stop_token_id: int) -> torch.Tensor:
    """(B, T) bool, True after the first EOS (see the module docstring for the convention)."""
    idx = torch.arange(responses.size(1), device=responses.device)  # (T,)
    return idx.unsqueeze(0) > sequence_lengths(responses, stop_token_id).unsqueeze(1)  # (B, T)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` over positions where `mask` is true (all of them, or along `dim`)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum()
    return (values * mask).sum(dim) / mask.sum(dim)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the masked positions; Bessel-corrected by default, as in TRL."""
    centered = values - masked_mean(values, mask)
    var = masked_mean(centered**2, mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            # n == 1 would divide by zero: happens with a one-sequence minibatch of length 1
            raise ValueError(f"masked_var needs >= 2 unmasked values, got {int(n)}; use a larger minibatch")
        var = var * n / (n - 1)
    return var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(values - mean) / std over the masked positions. [D08] advantages, [D09] rewards (opt-in)

    shift_mean=False adds the mean back: whitened rewards keep their sign on average, so the
    policy still sees "good" vs "bad" episodes. Variance is unbiased, as in TRL's core.py (the
    pinned reference ppo.py uses the biased one; the two differ by n/(n-1), ~1e-4 at our sizes).
    Padded positions come back with garbage values: callers refill them (usually with 0).
    """
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean
