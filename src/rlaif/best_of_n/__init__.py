"""Best-of-n: n samples from the SFT policy, the reward model keeps the best. The math is in
`selection` (picks at every n of the ladder 1, 2, 4, ..., N; the KL bound); the sampling and
scoring loop is the stage's (rlaif.stages.best_of_n)."""
