"""Prompt enhancers: turn a user's colloquial prompt into the detailed prompt the model was trained on.

`generate` and `evaluate` take one (`--enhancer offline|URL`), so prompt-track cases are re-evaluated with
rewriting. Two kinds, one interface (`enhance(prompts) -> rewrites`):

- `OfflineEnhancer`: built from the prompt track's pairs (`tracks/prompt`, columns prompt/rewrite). A prompt
  seen in the track gets its rewrite; any other prompt is expanded by the intent-preserving rules
  (flywheel.tracks.rewrite) with the detail phrases of the most similar track rewrites (word overlap), so
  it works without a model or network.
- `EndpointEnhancer`: an LLM at an OpenAI-compatible `/chat/completions` endpoint (URL + model, key from
  `OPENAI_API_KEY`), given the same system prompt the exported chat pairs carry. An answer that breaks the
  prompt's intent (lost counts, negations, quoted text) is replaced by the rule-based expansion, and the
  enhancer counts how often that happened.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pyarrow.parquet as pq

from flywheel.config import ConfigError
from flywheel.errors import UserError
from flywheel.llm import chat_completion
from flywheel.store.shards import ShardStore
from flywheel.tracks.rewrite import content_words, core_of, detail_phrases, expand_prompt, intent_violations
from flywheel.workspace import Workspace

SYSTEM_PROMPT = (
    "You are a prompt enhancer for a text-to-image model. Rewrite the user's request as one detailed, "
    "descriptive image prompt. Keep everything the user asked for exactly: counts, negations ('no X', "
    "'without X'), quoted text verbatim, named objects, colours and positions. Add only detail that does not "
    "contradict the request (medium, setting, lighting, composition). Answer with the prompt only."
)


class EnhancerError(UserError):
    """The enhancer could not be built or could not answer (message says what to fix)."""


class PromptEnhancer(Protocol):
    name: str

    def enhance(self, prompts: Sequence[str]) -> list[str]: ...


@dataclass
class OfflineEnhancer:
    """Rewrites from the prompt track's (prompt, rewrite) pairs, expanding unseen prompts by rule."""

    pairs: dict[str, str] = field(default_factory=dict)
    name: str = "offline"
    max_neighbours: int = 3

    @classmethod
    def from_track(cls, track_dir: str | Path) -> OfflineEnhancer:
        """Read the complete shards of a prompt track (ShardStore); an empty track gives a rules-only enhancer."""
        pairs: dict[str, str] = {}
        for shard in ShardStore(track_dir).shard_paths():
            table = pq.read_table(shard)
            if not {"prompt", "rewrite"} <= set(table.column_names):
                raise EnhancerError(f"{shard} lacks prompt/rewrite columns: re-run `flywheel tracks --track prompt`")
            for prompt, rewrite in zip(
                table.column("prompt").to_pylist(), table.column("rewrite").to_pylist(), strict=True
            ):
                if prompt and rewrite and not intent_violations(prompt, rewrite):
                    pairs.setdefault(" ".join(prompt.split()).lower(), rewrite)
        return cls(pairs=pairs)

    def _neighbours(self, prompt: str) -> list[str]:
        words = content_words(core_of(prompt))
        scored = []
        for seen, rewrite in self.pairs.items():
            other = content_words(core_of(seen))
            overlap = len(words & other) / max(1, len(words | other))
            if overlap > 0:
                scored.append((overlap, rewrite))
        scored.sort(key=lambda x: -x[0])
        return [r for _, r in scored[: self.max_neighbours]]

    def enhance(self, prompts: Sequence[str]) -> list[str]:
        out = []
        for prompt in prompts:
            seen = self.pairs.get(" ".join(prompt.split()).lower())
            out.append(seen if seen is not None else expand_prompt(prompt, detail_phrases(self._neighbours(prompt))))
        return out


@dataclass
class EndpointEnhancer:
    """An OpenAI-compatible chat endpoint; `base_url` up to `/v1`."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    name: str = "endpoint"
    fallbacks: int = 0
    client: httpx.Client | None = None

    def _ask(self, client: httpx.Client, prompt: str) -> str:
        content = chat_completion(
            client, self.base_url, self.model, SYSTEM_PROMPT, prompt, api_key=self.api_key, timeout_s=self.timeout_s
        )
        if not isinstance(content, str) or not content.strip():
            raise EnhancerError("the endpoint answered with an empty message")
        return " ".join(content.strip().strip('"').split())

    def enhance(self, prompts: Sequence[str]) -> list[str]:
        client = self.client or httpx.Client()
        out = []
        try:
            for prompt in prompts:
                try:
                    rewrite = self._ask(client, prompt)
                except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                    raise EnhancerError(f"prompt enhancer at {self.base_url} failed: {exc}") from exc
                if intent_violations(prompt, rewrite):
                    self.fallbacks += 1
                    rewrite = expand_prompt(prompt)
                out.append(rewrite)
        finally:
            if self.client is None:
                client.close()
        return out


def load_enhancer(spec: str, workspace: str | Path, *, model: str | None = None) -> PromptEnhancer:
    """`offline` (the workspace's prompt track) or an endpoint URL (`http(s)://host/v1`; model from `model`
    or FLYWHEEL_ENHANCER_MODEL)."""
    if spec == "offline":
        return OfflineEnhancer.from_track(Workspace.at(workspace).tracks_dir("prompt"))
    if spec.startswith(("http://", "https://")):
        name = model or os.environ.get("FLYWHEEL_ENHANCER_MODEL")
        if not name:
            raise ConfigError("--enhancer URL needs a model: pass --enhancer-model or set FLYWHEEL_ENHANCER_MODEL")
        return EndpointEnhancer(spec, name, os.environ.get("OPENAI_API_KEY"))
    raise ConfigError(f"--enhancer must be 'offline' or an http(s):// endpoint URL, got {spec!r}")
