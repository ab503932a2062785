"""The reward model: preference pairs from every source (`data`), pairwise losses and metrics
(`losses`), the scalar model itself (`model`: build, encode, load, score) and its Trainer (`trainer`)."""
