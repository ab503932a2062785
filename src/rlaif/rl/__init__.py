"""The RL stage's PPO (TRL removed its PPOTrainer, so we own it): the math, the models, the loop.

Follows Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO" (arXiv 2403.17031),
and its reference code vwxyzjn/summarize_from_feedback_details (ppo.py). Detail IDs such as [D07]
refer to docs/implementation_details.md. Three layers, each using only those above it:

  tensor math, (B, T) over the *response* tokens, no models, no config, no I/O:
    masking.py     EOS truncation, sequence lengths, padding masks, masked mean/var/whiten
    gae.py         per-token KL, KL-shaped rewards, GAE advantages and returns
    losses.py      clipped policy / value losses, log-probs and entropy from logits
  models and reward sources:
    policy.py      RLModels and the policy / value / reference wiring of `standard` and `lean` mode
    build.py       build_rl_models: the one builder, every model on the accelerator's device
    rewards.py     reward sources: the reward model (separate, or an adapter on the policy's base) and
                   d-RLAIF (the labeler's 1-10 rating, through labelers.rating)
    sampling.py    KV-cache sampling that returns log-probs (and lean values) with the tokens
  the run:
    ppo.py         one rollout and its clipped updates
    trainer.py     the loop: prompts, logs, checkpoints, resume
    checkpoint.py  exact-resume checkpoints
    heldout.py     the post-training check on held-out posts
"""


class NonFiniteLossError(RuntimeError):
    """A NaN or inf PPO loss: the run stops; its last checkpoint (saved before it) is kept. Here,
    not in ppo.py, so the CLI can name it without importing torch code."""
