"""Evaluation of policies as systems: the one greedy decoder every system's summaries come from
(`summaries`), per-comparison and per-system metrics (`metrics`), the KL-reward frontier (`frontier`)
and the statistics under them (`stats`: outcomes, bootstrap intervals, length control, ROUGE-L).
The judge itself is a labeler task (rlaif.labelers)."""
