"""LoRA on the top layers only (lora.frozen_layers): adapters where asked, gradients stop there."""

from __future__ import annotations

import pytest
import torch

from rlaif.config import ConfigError, LoraSettings, load_config
from rlaif.models import decoder_layers, embedded_folder, linear_names, load_causal_lm, load_tokenizer
from rlaif.training import apply_lora


def _adapted_layers(model) -> set[int]:
    _, blocks = decoder_layers(model.base_model.model.base_model)
    return {i for i, block in enumerate(blocks) if any("lora_A" in n for n, _ in block.named_parameters())}


@pytest.mark.parametrize("frozen", [0.0, 0.5])
def test_frozen_layers_get_no_adapter_and_no_gradient(frozen):
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder)
    model = load_causal_lm(folder, tokenizer)
    n_layers = len(decoder_layers(model.base_model)[1])
    model.requires_grad_(False)
    model = apply_lora(model, LoraSettings(enabled=True, r=4, frozen_layers=frozen), task_type="CAUSAL_LM")
    first = int(frozen * n_layers)
    assert _adapted_layers(model) == set(range(first, n_layers))
    # every linear map of an adapted block gets its adapter, as "all-linear" does over all blocks
    plain = decoder_layers(load_causal_lm(folder, tokenizer).base_model)[1][0]
    block = decoder_layers(model.base_model.model.base_model)[1][n_layers - 1]
    assert {n.rsplit(".", 1)[-1] for n, m in block.named_modules() if hasattr(m, "lora_A")} == set(linear_names(plain))

    ids = torch.arange(3, 15).unsqueeze(0)
    model(input_ids=ids).logits.float().pow(2).mean().backward()
    with_grad = [n for n, p in model.named_parameters() if p.grad is not None]
    assert with_grad and all("lora_" in n for n in with_grad)


def test_frozen_layers_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match=r"dpo\.lora\.frozen_layers"):
        load_config("configs/tiny.yaml", ["dpo={lora: {enabled: true, frozen_layers: 1.0}}"])
