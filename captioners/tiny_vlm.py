"""Random-weight Qwen2-VL models built from a config, saved like a downloaded checkpoint.

Tests and benchmarks need a real image-text-to-text model that loads through exactly the
path a production checkpoint takes (`AutoModelForImageTextToText.from_pretrained(dir)`),
without downloading weights. The architecture is Qwen2-VL (the family Qwen-Image annotates
with); the tokenizer is a byte-level BPE trained offline on a few sentences plus the Qwen
chat and vision special tokens, so any UTF-8 output (including garbage) round-trips.
Output of these models is meaningless by construction: they exist to measure the pipeline
(batching, parsing, repair, throughput), not caption quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flywheel.errors import UserError

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The Qwen2-VL chat template, reduced to what captioning sends (system + user turns with images and text).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    'A photo of a red bus on a city street with the text OPEN DAILY. {"image_type": "photo", "style": null}',
    "A poster with Chinese text 欢迎光临 and a menu table, 価格 안녕하세요 Добро пожаловать مرحبا नमस्ते สวัสดี",
    'The image shows entities, attributes and relations: a cat sits on a mat near a window. ["watermark", true]',
)


@dataclass(frozen=True)
class VlmSize:
    """Dimensions of a random-weight Qwen2-VL; `tiny` runs in tests, `2b` approximates Qwen2-VL-2B."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    vision_depth: int
    vision_embed_dim: int
    vision_heads: int


SIZES: dict[str, VlmSize] = {
    "tiny": VlmSize(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        layers=2,
        heads=4,
        kv_heads=2,
        vision_depth=1,
        vision_embed_dim=32,
        vision_heads=2,
    ),
    # Qwen2-VL-2B: 1536 hidden, 28 layers, 12/2 heads, 8960 FFN, 32-layer 1280-d ViT (~2.2B parameters).
    "2b": VlmSize(
        vocab_size=151_936,
        hidden_size=1536,
        intermediate_size=8960,
        layers=28,
        heads=12,
        kv_heads=2,
        vision_depth=32,
        vision_embed_dim=1280,
        vision_heads=16,
    ),
}


def build_tokenizer(vocab_size: int):  # -> PreTrainedTokenizerFast
    """Byte-level BPE trained on a tiny multilingual corpus, with the Qwen special tokens appended."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS) * 4, trainer=trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_random_vlm(out_dir: str | Path, size: str = "tiny", seed: int = 0, save: bool = True):
    """Build a random-weight Qwen2-VL of `size`, save model + processor to `out_dir`; return (model, processor)."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    if size not in SIZES:
        raise UserError(f"unknown VLM size {size!r}; known: {sorted(SIZES)}")
    dims = SIZES[size]
    tokenizer = build_tokenizer(min(dims.vocab_size, 4096))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = dims.hidden_size // dims.heads
    half = head_dim // 2
    section = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]  # temporal, height, width rotary split
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": max(dims.vocab_size, len(tokenizer)),
            "hidden_size": dims.hidden_size,
            "intermediate_size": dims.intermediate_size,
            "num_hidden_layers": dims.layers,
            "num_attention_heads": dims.heads,
            "num_key_value_heads": dims.kv_heads,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": size == "tiny",
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": section},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": dims.vision_depth,
            "embed_dim": dims.vision_embed_dim,
            "hidden_size": dims.hidden_size,
            "num_heads": dims.vision_heads,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    # Few image tokens keep the tiny model fast: at most 112x112 pixels (16 patches, 4 merged tokens).
    max_pixels = 112 * 112 if size == "tiny" else 448 * 448
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels)
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    if save:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)  # safetensors
        processor.save_pretrained(out)
    return model, processor
