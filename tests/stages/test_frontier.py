"""Stage frontier on the tiny preset: every method's snapshots and best-of-n's curve, scored by both
arms' reward models, with the plot in the report."""

from __future__ import annotations

import json

import pytest

from rlaif.best_of_n.selection import kl_bound
from rlaif.cli import main
from tests.conftest import needs_shared_data

pytestmark = [needs_shared_data, pytest.mark.slow]

DPO = (
    "dpo={batch_size: 4, micro_batch_size: 2, learning_rate: 1.0e-3, max_response_tokens: 12, max_steps: 4, "
    "snapshots: 2, arms: [rlaif], lora: {enabled: true, r: 8}}"
)
BEST_OF_N = "best_of_n={n: 4, max_new_tokens: 12, sample_batch_size: 4, arms: [rlaif]}"
FRONTIER = "frontier={posts: 3, max_new_tokens: 12, batch_size: 3, best_of_n: [1, 2, 4], bootstrap_samples: 50}"


def test_frontier_of_dpo_snapshots_and_best_of_n(tmp_path):
    run = tmp_path / "run"
    args = ["configs/tiny.yaml", "--set", f"output_dir={run}", "--set", "rl=null", "--set", DPO,
            "--set", BEST_OF_N, "--set", FRONTIER, "--set", "evaluate.comparisons=[dpo:sft]"]  # fmt: skip
    assert main(["run", *args]) == 0
    snapshots = sorted(p.name for p in (run / "dpo" / "trajectory").iterdir())
    assert snapshots == ["step-2", "step-4"]  # 2 evenly spaced points, the last at the end; LoRA: adapters only
    assert (run / "dpo" / "trajectory" / "step-4" / "adapter_config.json").exists()

    metrics = json.loads((run / "frontier" / "metrics.json").read_text())
    assert metrics["reward_models"] == ["reward", "reward_rlhf"]
    assert metrics["methods"]["dpo"] == {"label": "DPO (RLAIF)", "own_rm": "reward", "other_rm": "reward_rlhf",
                                         "kind": "trajectory"}  # fmt: skip
    assert metrics["methods"]["best_of_n"]["own_rm"] == "reward"
    points = {(p["stage"], p.get("step", p.get("n"))): p for p in metrics["points"]}
    assert set(points) == {("sft", 0), ("dpo", 2), ("dpo", 4), ("best_of_n", 1), ("best_of_n", 2), ("best_of_n", 4)}
    assert points[("sft", 0)]["kl"]["mean"] == 0.0 and points[("dpo", 4)]["posts"] == 3
    for key in [("dpo", 2), ("dpo", 4)]:
        kl = points[key]["kl"]
        assert kl["ci_low"] <= kl["mean"] <= kl["ci_high"]
        assert set(points[key]["scores"]) == {"reward", "reward_rlhf"}
    assert points[("best_of_n", 4)]["kl"] == {"mean": kl_bound(4), "ci_low": None, "ci_high": None, "bound": True}
    # the pick at n = 4 by the own RM never scores below the pick at n = 1 on average, by that RM
    own = [points[("best_of_n", n)]["scores"]["reward"]["mean"] for n in (1, 2, 4)]
    assert own == sorted(own)

    report = (run / "report" / "report.md").read_text()
    assert "## Stage frontier" in report and "![reward against KL to SFT](plots/frontier.png)" in report
    assert "| DPO (RLAIF) | step 4 |" in report and "| best-of-n (RLAIF RM) | n=4 |" in report
    samples = [json.loads(x) for x in (run / "frontier" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * 3  # SFT and two snapshots, 3 posts each (best-of-n reuses its candidates)
