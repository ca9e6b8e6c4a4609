"""Prompt track: prompt-rewrite pairs (colloquial user prompt -> detailed prompt, with a reasoning trace).

Sources: for each bad case routed to the prompt track, the curated samples whose captions are nearest to
the case's prompt (the enhancer learns to rewrite requests like the one that failed), plus the case prompt
itself as a target when it is already detailed. Offline the degradation is rule-based (flywheel.tracks.degrade);
with an OpenAI-compatible endpoint configured, an LLM degrades instead and the rule-based result is kept as
fallback only when the endpoint answers with something unusable (the row says which produced it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa

from flywheel.retrieval.engine import IndexError_, RetrievalEngine
from flywheel.retrieval.space import TextEmbedder
from flywheel.tracks.common import write_track
from flywheel.tracks.degrade import Degraded, degrade
from flywheel.workspace import Workspace

REWRITE_SCHEMA = pa.schema(
    [
        ("user_prompt", pa.string()),
        ("target_prompt", pa.string()),
        ("trace", pa.string()),
        ("ops", pa.list_(pa.string())),
        ("producer", pa.string()),
        ("source_id", pa.string()),
        ("badcase_ids", pa.list_(pa.string())),
    ]
)

LLM_INSTRUCTION = (
    "You build training data for a prompt enhancer. Degrade the detailed image caption into a short, casual "
    "request a user might type: simplify the style, colloquialise, drop or underspecify details. Answer with "
    'JSON only: {"user_prompt": "...", "trace": [{"op": "...", "restore": "...", "why": "..."}]} where trace '
    "lists the inverse edits that turn the user prompt back into the caption, in the order to apply them."
)


@dataclass
class LlmEndpoint:
    """An OpenAI-compatible chat endpoint (base URL up to /v1); the key comes from the environment."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0

    def degrade(self, caption: str, client: httpx.Client) -> Degraded:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        resp = client.post(
            f"{self.base_url.rstrip('/')}/chat/completions",
            headers=headers,
            timeout=self.timeout_s,
            json={
                "model": self.model,
                "temperature": 0.7,
                "messages": [{"role": "system", "content": LLM_INSTRUCTION}, {"role": "user", "content": caption}],
            },
        )
        resp.raise_for_status()
        content = resp.json()["choices"][0]["message"]["content"]
        data = json.loads(content.strip().removeprefix("```json").removesuffix("```"))
        if not isinstance(data.get("user_prompt"), str) or not isinstance(data.get("trace"), list):
            raise ValueError(f"endpoint answer lacks user_prompt/trace: {content[:200]}")
        return Degraded(
            user_prompt=data["user_prompt"],
            target_prompt=caption,
            ops=["llm"],
            trace=[{k: str(v) for k, v in step.items()} for step in data["trace"]],
        )


@dataclass
class RewriteResult:
    cases: int
    pairs: int
    llm_failures: int
    path: str | None


def _targets(
    engine: RetrievalEngine | None, embedder: TextEmbedder | None, cases: Sequence[dict[str, Any]], per_case: int
) -> dict[str, tuple[str, list[str]]]:
    """caption -> (source id, bad-case ids) for the curated captions nearest each case's prompt."""
    out: dict[str, tuple[str, list[str]]] = {}
    if engine is None or embedder is None or not cases:
        return out
    try:
        table = engine.find("caption", text_queries=True)
    except IndexError_:
        return out
    for case, vec in zip(cases, embedder.embed_texts([c["prompt"] for c in cases]), strict=True):
        hits = engine.search(
            table.name, vec, k=per_case, where="curated = true AND caption IS NOT NULL", columns=["id", "caption"]
        )
        for sid, caption in zip(hits.column("id").to_pylist(), hits.column("caption").to_pylist(), strict=True):
            entry = out.setdefault(caption, (sid, []))
            if case["case_id"] not in entry[1]:
                entry[1].append(case["case_id"])
    return out


def rewrite_pairs(
    ws: Workspace,
    cases: Sequence[dict[str, Any]],
    *,
    engine: RetrievalEngine | None,
    embedder: TextEmbedder | None,
    per_case: int = 5,
    llm: LlmEndpoint | None = None,
    client: httpx.Client | None = None,
    seed: int = 0,
) -> RewriteResult:
    targets = _targets(engine, embedder, cases, per_case)
    for case in cases:  # the failing prompt itself, when it is detailed enough to be a target
        if len(case["prompt"].split()) >= 8:
            targets.setdefault(case["prompt"], (case["case_id"], []))[1].append(case["case_id"])
    rows, failures = [], 0
    own_client = client is None and llm is not None
    client = client or (httpx.Client() if llm is not None else None)
    try:
        for i, (caption, (sid, case_ids)) in enumerate(sorted(targets.items())):
            producer = "rules"
            if llm is not None and client is not None:
                try:
                    d, producer = llm.degrade(caption, client), f"llm:{llm.model}"
                except (httpx.HTTPError, ValueError, KeyError, json.JSONDecodeError):
                    failures += 1
                    d = degrade(caption, seed + i)
                    producer = "rules (llm failed)"
            else:
                d = degrade(caption, seed + i)
            rows.append(
                {
                    "user_prompt": d.user_prompt,
                    "target_prompt": d.target_prompt,
                    "trace": json.dumps(d.trace, ensure_ascii=False),
                    "ops": d.ops,
                    "producer": producer,
                    "source_id": sid,
                    "badcase_ids": sorted(set(case_ids)),
                }
            )
    finally:
        if own_client and client is not None:
            client.close()
    if not rows:
        return RewriteResult(len(cases), 0, failures, None)
    table = pa.Table.from_pylist(rows, schema=REWRITE_SCHEMA)
    path = write_track(ws, "prompt", table, {"cases": len(cases), "llm": llm.model if llm else None})
    return RewriteResult(len(cases), len(rows), failures, str(path))
