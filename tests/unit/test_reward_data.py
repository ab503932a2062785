"""Reward-stage data helpers: label reading, splits, append-only resume, encoding and head init."""

import json
import math

import pytest
import torch

from rlaif.config import RewardConfig
from rlaif.data import DataError
from rlaif.jsonl import AppendLog
from rlaif.models import load_tokenizer
from rlaif.reward.data import label_pairs, split_pairs
from rlaif.reward.model import build_reward_model, encode, raw_scores
from rlaif.reward.trainer import PairCollator, tokenize_pairs, training_features


def write_labels(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def label_row(i, p_a, undecided=False):
    return {
        "id": f"p{i}",
        "prompt": "POST: x\n\nTL;DR:",
        "summary_a": "a",
        "summary_b": "b",
        "p_a": p_a,
        "undecided": undecided,
    }


def test_label_pairs_drops_unlabelled_rows_and_names_bad_fields(tmp_path):
    path = write_labels(
        tmp_path / "labels.jsonl", [label_row(0, 0.7), label_row(1, None, True), label_row(2, 0.5, True)]
    )
    pairs, dropped = label_pairs(path)
    assert [p["id"] for p in pairs] == ["p0", "p2"] and dropped == 1  # `undecided: half` rows carry 0.5 and stay
    write_labels(path, [label_row(0, 0.7), label_row(1, 1.5)])
    with pytest.raises(DataError, match=r"labels\.jsonl:2: field 'p_a' must be a probability"):
        label_pairs(path)


def test_split_is_seeded_and_independent_of_file_order():
    pairs = [{"id": f"p{i}"} for i in range(20)]
    train, held = split_pairs(pairs, 0.25, seed=3, max_examples=None)
    train2, held2 = split_pairs(list(reversed(pairs)), 0.25, seed=3, max_examples=None)
    assert (train, held) == (train2, held2) and len(held) == 5 and len(train) == 15
    assert not {p["id"] for p in train} & {p["id"] for p in held}
    train0, held0 = split_pairs(pairs, 0.0, seed=3, max_examples=4)
    assert held0 == [] and train0 == split_pairs(pairs, 0.0, 3, None)[0][:4]


def test_append_log_cuts_a_torn_last_line(tmp_path):
    # reference_samples.jsonl (sample_for_references) is an AppendLog: a kill mid-write loses one row at most
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"id": "a"}) + "\n" + json.dumps({"id": "b"}) + "\n" + '{"id": "c", "sam')
    with AppendLog(path) as log:
        assert [row["id"] for row in log.rows] == ["a", "b"]
    assert path.read_text().endswith('{"id": "b"}\n')  # the next append starts on a clean line


def test_training_features_clamp_soft_labels_and_scale_margins():
    rm = RewardConfig(loss="soft", label_clamp=[0.4, 0.6], margin_coef=2.0)
    label, margin = training_features({"p_a": 0.9}, rm)
    assert label == pytest.approx(0.6) and margin == pytest.approx(2.0 * 0.8)
    assert training_features({"p_a": 1.0}, RewardConfig(loss="hard")) == (1.0, 0.0)


def test_summaries_of_one_prompt_share_its_encoding_and_score_as_alone(monkeypatch):
    """raw_scores runs a prompt's tokens once for all of its summaries [D56]: same scores as one pass each."""
    import rlaif.reward.model as reward_model

    tokenizer = load_tokenizer("tiny-random")
    model = build_reward_model("tiny-random", tokenizer, seed=0)
    post = "POST: My landlord wants to raise the rent by 30% with two weeks notice. Is that legal here?\n\nTL;DR:"
    other = "POST: I keep forgetting to water my plants.\n\nTL;DR:"
    prompts = [post, other, post, post, other, post]
    summaries = ["rent up 30%", "plants", "landlord raises rent with short notice, is it legal", "", "water", "x y"]
    passes = []
    hook = model.base_model.register_forward_pre_hook(
        lambda module, args, kwargs: passes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    shared = raw_scores(model, tokenizer, prompts, summaries, batch_size=3)
    hook.remove()
    post_tokens = len(tokenizer(post, add_special_tokens=False).input_ids)
    assert passes[0] == (1, post_tokens)  # the long post once; its 4 summaries in chunks of <= 3 rows
    assert [rows for rows, _ in passes[1:3]] == [3, 1] and max(width for _, width in passes[1:3]) < post_tokens
    monkeypatch.setattr(reward_model, "SHARED_PREFIX_MIN", 10**6)  # no sharing: every sequence in full
    alone = raw_scores(model, tokenizer, prompts, summaries, batch_size=3)
    torch.testing.assert_close(shared, alone, atol=1e-5, rtol=1e-4)


def test_encoding_keeps_the_end_and_scores_match_single_passes():
    tokenizer = load_tokenizer("tiny-random")
    full = encode(tokenizer, "Human: hi there, how are you today?\n\nAssistant:", "Fine, thanks.")
    assert full[-1] == tokenizer.eos_token_id
    cut = encode(tokenizer, "Human: hi there, how are you today?\n\nAssistant:", "Fine, thanks.", max_length=6)
    assert cut == full[-6:]
    model = build_reward_model("tiny-random", tokenizer, seed=0)
    w = model.score.weight
    assert model.score.bias is None and w.std().item() == pytest.approx(1 / math.sqrt(w.shape[1] + 1), rel=0.3)
    prompts, summaries = ["POST: a\n\nTL;DR:", "POST: a much longer post here\n\nTL;DR:"], ["short", "a longer summary"]
    batched = raw_scores(model, tokenizer, prompts, summaries, batch_size=2)  # right-padded together
    alone = torch.stack([raw_scores(model, tokenizer, [p], [s], batch_size=1)[0] for p, s in zip(prompts, summaries)])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
    rows = tokenize_pairs(
        [{"prompt": prompts[0], "summary_a": "x", "summary_b": "y z", "p_a": 0.5}], tokenizer, RewardConfig(loss="hard")
    )
    assert len(rows) == 0  # a tie teaches the hard loss nothing
    batch = PairCollator(tokenizer.pad_token_id)(
        list(
            tokenize_pairs(
                [{"prompt": prompts[0], "summary_a": "x", "summary_b": "y z", "p_a": 0.8}], tokenizer, RewardConfig()
            )
        )
    )
    assert batch["input_ids"].shape[0] == 2 and batch["p_a"].tolist() == pytest.approx([0.6])


def test_last_checkpoint_passes_over_a_torn_one(tmp_path):
    from rlaif.training import last_checkpoint

    for step, complete in ((3, True), (6, True), (9, False)):  # checkpoint-9: killed while it was written
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-6")
    assert last_checkpoint(tmp_path / "missing") is None
