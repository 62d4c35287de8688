"""Tiny random-weight models for tests and offline demos (no download).

``build_tiny_nli_model`` writes an MNLI-shaped BART with random weights next
to a copy of the packaged MiniLM tokenizer, so the NLI code path loads through
the very same ``from_pretrained`` calls as ``facebook/bart-large-mnli``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def build_tiny_nli_model(
    out_dir: str | Path,
    seed: int = 0,
    d_model: int = 32,
    layers: int = 1,
    heads: int = 2,
    ffn_multiplier: int = 2,
    max_positions: int = 512,
) -> str:
    """Write a random ``BartForSequenceClassification`` (3 NLI labels) to ``out_dir``.

    Tiny by default (tests); the shape parameters let a benchmark build a
    bart-large-mnli-sized model (d_model 1024, 12 layers, 16 heads, ffn x4).
    """
    import torch
    from transformers import AutoTokenizer, BartConfig, BartForSequenceClassification

    from shared.classifier import default_base_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(default_base_model())
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn_multiplier * d_model,
        decoder_ffn_dim=ffn_multiplier * d_model,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.sep_token_id,
        forced_eos_token_id=tokenizer.sep_token_id,
        num_labels=3,
        id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
        label2id={"contradiction": 0, "neutral": 1, "entailment": 2},
    )
    torch.manual_seed(seed)
    model = BartForSequenceClassification(config)
    model.save_pretrained(str(out))
    return str(out)
