"""Agreement with people on the tiny preset and on real rows: the labeler and the RLHF reward model are
measured on the held-out part of human.comparisons, split by post [H02, H03]."""

from __future__ import annotations

import json

import pytest

from rlaif.cli import main
from rlaif.config import load_config
from rlaif.data.splits import human_split
from tests.conftest import SHARED_DATA, needs_shared_data
from tests.labelers.fake_openai_server import FakeOpenAIServer
from tests.stages.test_reward import make_upstream

pytestmark = needs_shared_data
CONFIG = "configs/tiny.yaml"
BATCH13 = SHARED_DATA / "tldr" / "sff_comparisons_batch13.jsonl"


def sets(run, *overrides: str) -> list[str]:
    return [x for o in (f"output_dir={run}", *overrides) for x in ("--set", o)]


def read(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def test_a_labeler_that_always_prefers_the_second_summary_scores_its_real_rate(tmp_path):
    """Batch 13 as released, with every summaries[1] marked GOOD, which the fake judge server always
    prefers: the symmetric high-confidence set gives it its real rate (238 of 549: 0.434), the seed's
    one-sided `confidence >= 8` a perfect 1.0 [H01]."""
    marked = tmp_path / "batch13_second_marked.jsonl"
    with open(marked, "w") as fh:
        for row in read(BATCH13):
            second = row["summaries"][1]
            row["summaries"][1] = {**second, "text": " GOOD" + second["text"]}
            fh.write(json.dumps(row) + "\n")
    run = tmp_path / "run"
    with FakeOpenAIServer() as server:
        overrides = (
            "label.labeler.backend=openai_api",
            "label.labeler.model=judge",
            f"label.labeler.api.base_url={server.base_url}",
            "label.labeler.api.max_retries=0",
            "label.labeler.api.concurrency=8",
            "label.prompt_style=base",
            "label.alignment_summarize=[]",
            "label.alignment_dialogue=[]",
            f"human.comparisons=[{{path: {marked}}}]",
            "human.heldout_fraction=1.0",
            "human.max_heldout=null",
            "human.labeler_max_heldout=null",
            "human.one_sided_min_confidence=8",
        )
        assert main(["label", CONFIG, "--eval-alignment", *sets(run, *overrides)]) == 0
    m = json.loads((run / "label_alignment" / "metrics.json").read_text())
    assert set(m) == {"human_heldout"}
    heldout = m["human_heldout"]
    assert heldout["distinct_pairs"] == 905  # a pair several workers judged is one question to the labeler
    agree = heldout["agreement_with_people"]
    assert agree["rows"] == 1097 and agree["answered"] == 1097
    high = agree["subsets"]["high_confidence"]["accuracy"]
    assert high["n"] == 549 and high["value"] == pytest.approx(238 / 549)
    assert high["ci_low"] < 0.5 < high["ci_high"] or high["ci_high"] < 0.5  # nowhere near 1.0
    assert agree["subsets"]["one_sided"]["accuracy"]["value"] == 1.0
    assert agree["accuracy"]["value"] == pytest.approx(473 / 1097)
    # it judges the text, not the slot: the same summary wins in both orders
    assert agree["position_bias"]["flip_rate"] == 0.0 and agree["position_bias"]["first_rate"] == pytest.approx(0.5)
    assert heldout["alignment_with_humans"]["accuracy"] == pytest.approx(473 / 1097)


def test_rlhf_reward_model_trains_on_training_posts_and_is_measured_on_the_others(tmp_path, capsys):
    run = tmp_path / "run"
    human = ["reward_rlhf.source=human", "reward_rlhf.validation_fraction=0"]
    cfg = load_config(CONFIG, [f"output_dir={run}", *human])
    make_upstream(cfg)
    split = human_split(cfg)
    assert main(["reward", CONFIG, "--arm", "rlhf", *sets(run, *human)]) == 0
    out = run / "reward_rlhf"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"] == "human" and metrics["examples"] == split.report["train_comparisons"]
    agree = metrics["agreement_with_people"]
    assert agree["rows"] == 8 and agree["heldout_rows_on_trained_posts"] == 0
    assert agree["split"] == split.report and metrics["score_std"] == agree["score_std"] > 0
    for key in ("accuracy", "length_baseline", "length_balanced", "minus_length_baseline", "prefers_longer"):
        assert agree[key]["ci_low"] <= agree[key]["value"] <= agree[key]["ci_high"], key
    scored = read(out / "human_heldout.jsonl")
    assert [r["id"] for r in scored] == [r["id"] for r in split.heldout]
    assert not {r["post_id"] for r in scored} & {r["post_id"] for r in split.train}

    # the split is part of the stage's fingerprint: a changed split reruns it
    assert main(["reward", CONFIG, "--arm", "rlhf", *sets(run, *human)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["reward", CONFIG, "--arm", "rlhf", *sets(run, *human, "human.max_heldout=4")]) == 0
    assert json.loads((out / "metrics.json").read_text())["agreement_with_people"]["rows"] == 4


def test_comparisons_named_directly_never_train_on_a_held_out_post(tmp_path):
    run = tmp_path / "run"
    same_file = [
        "reward_rlhf.source=human",
        f"reward_rlhf.comparisons=[{{path: {BATCH13}, limit: 40}}]",
        "reward_rlhf.validation_fraction=0",
    ]
    cfg = load_config(CONFIG, [f"output_dir={run}", *same_file])
    make_upstream(cfg)
    assert main(["reward", CONFIG, "--arm", "rlhf", *sets(run, *same_file)]) == 0
    metrics = json.loads((run / "reward_rlhf" / "metrics.json").read_text())
    held = human_split(cfg).report["heldout_comparisons"]
    assert metrics["heldout_posts_left_out"] == held and metrics["examples"] == 40 - held
    assert metrics["agreement_with_people"]["heldout_rows_on_trained_posts"] == 0


def test_dpo_rlhf_learns_from_the_reward_models_human_pairs_and_never_from_a_held_out_post():
    """dpo_rlhf with no comparisons of its own trains on what reward_rlhf trains on: the training part
    of human.comparisons, with reward_rlhf.min_strength [H02]."""
    from rlaif.models import load_tokenizer
    from rlaif.pipeline import has_human_comparisons
    from rlaif.stages.dpo import human_comparison_pairs

    cfg = load_config(CONFIG, ["reward_rlhf.source=human", "reward_rlhf.min_strength=3", "dpo={arms: [rlhf]}"])
    assert has_human_comparisons(cfg)
    split = human_split(cfg)
    pairs, report = human_comparison_pairs(cfg, load_tokenizer(cfg.sft.model))
    strong = [r for r in split.train if r["strength"] is not None and r["strength"] >= 3]
    assert 0 < len(pairs) == len(strong) < len(split.train)
    assert report["human_split"] == split.report
    assert {p["id"] for p in pairs} == {r["id"] for r in strong}  # none of a held-out post
    assert sorted(p["summary_a"] for p in pairs) == sorted(r["chosen"] for r in strong) and {
        p["p_a"] for p in pairs
    } == {1}
