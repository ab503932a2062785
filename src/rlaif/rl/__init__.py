"""Pure tensor math for our PPO (TRL removed its PPOTrainer, so we own it).

Follows Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO" (arXiv 2403.17031),
and its reference code vwxyzjn/summarize_from_feedback_details (ppo.py). Every function takes and
returns tensors shaped (B, T) over the *response* tokens only; no config objects, no I/O.
Detail IDs such as [D07] refer to docs/implementation_details.md.

    masking.py  EOS truncation, sequence lengths, padding masks, masked mean/var/whiten
    gae.py      per-token KL, KL-shaped rewards, GAE advantages and returns
    losses.py   clipped policy / value losses, log-probs and entropy from logits

The PPO stage itself (models, sampling, rollout + update, checkpoints, rewards) is built on them:
    policy.py   the models of `standard` and `lean` mode      sampling.py  KV-cache sampling
    ppo.py      rollout + update                              trainer.py   the loop, logs, resume
    checkpoint.py  exact-resume checkpoints                   rewards.py  reward sources (RM, d-RLAIF)
    heldout.py  the post-training check on held-out posts
"""


class NonFiniteLossError(RuntimeError):
    """A NaN or inf PPO loss: the run stops; its last checkpoint (saved before it) is kept. Here,
    not in ppo.py, so the CLI can name it without importing torch code."""
