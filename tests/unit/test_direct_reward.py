"""d-RLAIF's direct reward [D45]: the 1-10 distribution (with "10" as two tokens) and the rescaling."""

from __future__ import annotations

import torch

from rlaif.config import LabelerSettings
from rlaif.labelers.prompts import judge_text_from_prompt
from rlaif.labelers.rating import rescale
from rlaif.rl.rewards import DirectReward

PROMPT = "SUBREDDIT: r/cooking\n\nTITLE: Burnt rice\n\nPOST: Every time I cook rice the bottom burns.\n\nTL;DR:"


def test_rescale_maps_1_to_10_onto_minus_1_to_1():
    probs = torch.zeros(3, 10)
    probs[0, 0] = 1.0  # surely 1
    probs[1, 9] = 1.0  # surely 10
    probs[2] = 0.1  # uniform: expected 5.5
    torch.testing.assert_close(rescale(probs), torch.tensor([-1.0, 1.0, 0.0]))
    torch.testing.assert_close(
        rescale(torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 2.0]])), torch.tensor([(8.5 - 5.5) / 4.5])
    )  # unnormalised input is renormalised


def test_score_distribution_matches_full_forward_passes():
    reward = DirectReward(LabelerSettings(model="tiny-random", batch_size=2))
    labeler, prompt = reward.judge.labeler, reward.judge.prompt  # the hf_local backend, the rating prompt
    lm, tok = labeler.lm, labeler.tokenizer
    digit_ids = [tok.convert_tokens_to_ids(str(s)) for s in range(1, 10)]
    ten = tok("10", add_special_tokens=False).input_ids
    assert len(ten) == 2 and ten[0] == digit_ids[0]  # SmolLM2 spells 10 as `1` `0`
    summaries = ["The rice burns.", "A much longer summary of the problem with burnt rice at the bottom of the pot."]
    probs = reward.score_probs([PROMPT, PROMPT], summaries)  # padded batch, KV cache for the `0`
    for i, summary in enumerate(summaries):
        text = labeler.render(prompt.request(judge_text_from_prompt(PROMPT), summary))
        ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            first = torch.softmax(lm(ids).logits[0, -1], -1)
            after_one = torch.softmax(lm(torch.cat([ids, torch.tensor([[ten[0]]])], 1)).logits[0, -1], -1)
        p = first[digit_ids].clone()
        p_ten = p[0] * after_one[ten[1]]
        p[0] = p[0] * (1 - after_one[ten[1]])
        expected = torch.cat([p, p_ten.view(1)])
        torch.testing.assert_close(probs[i], expected / expected.sum(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    scores = reward(torch.zeros(2, 1), None, None, [PROMPT, PROMPT], summaries)
    assert scores.shape == (2,) and ((scores >= -1) & (scores <= 1)).all()
