"""Evaluation of policies as systems: statistics (`stats`: outcomes, bootstrap and paired intervals,
length control, ROUGE-L). The judge itself is a labeler task (rlaif.labelers)."""
