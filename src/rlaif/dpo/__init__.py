"""Direct preference optimisation: the soft DPO loss (`losses`), pair log-probs with the prompt run
once and the vocabulary head on response positions only (`sequences`), the offline trainer over a
fixed set of labeled pairs with reference log-probs cached once (`trainer`), and online AI feedback,
pairs sampled from the current policy and judged as they come (`online`). Stages: dpo, oaif."""
