"""Prompt track: prompt-rewrite pairs (colloquial `prompt` -> detailed `rewrite`, with a reasoning trace).

Two kinds of rows per bad case routed to the prompt track:
- the case itself: `prompt` = the prompt that failed, `rewrite` = its intent-preserving expansion
  (flywheel.tracks.rewrite: counts, negations, quoted text and content words kept, plus detail phrases of the
  nearest curated captions that touch nothing the prompt constrains), or an LLM's rewrite through the
  enhancer when an endpoint is configured (checked the same way; a violating answer falls back to the rules);
- reverse-built pairs: the curated captions nearest the prompt, degraded into casual requests (rule-based,
  flywheel.tracks.degrade, or by the LLM), so the enhancer also learns to restore detail. Here the caption is
  the rewrite of its own degradation, never of the case's prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.enhancer import SYSTEM_PROMPT, EndpointEnhancer, EnhancerError
from flywheel.llm import chat_completion
from flywheel.retrieval.engine import IndexError_, RetrievalEngine
from flywheel.retrieval.space import TextEmbedder
from flywheel.store.shards import ShardStore, write_bytes_atomic
from flywheel.tracks.common import track_dir, write_track
from flywheel.tracks.degrade import Degraded, degrade
from flywheel.tracks.registry import TrackInputs
from flywheel.tracks.rewrite import core_of, detail_phrases, expand_prompt
from flywheel.workspace import Workspace

REWRITE_SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("rewrite", pa.string()),
        ("badcase_id", pa.string()),
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
        content = chat_completion(
            client,
            self.base_url,
            self.model,
            LLM_INSTRUCTION,
            caption,
            api_key=self.api_key,
            temperature=0.7,
            timeout_s=self.timeout_s,
        )
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
    rows, failures = [], 0
    own_client = client is None and llm is not None
    client = client or (httpx.Client() if llm is not None else None)
    try:
        rows += _case_rows(cases, targets, llm, client)
        for case in cases:  # a detailed failing prompt is also the rewrite of its own degradations
            if len(case["prompt"].split()) >= 8:
                targets.setdefault(case["prompt"], (case["case_id"], []))[1].append(case["case_id"])
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
                    "prompt": d.user_prompt,
                    "rewrite": d.target_prompt,
                    "badcase_id": sorted(set(case_ids))[0],
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


def _case_rows(
    cases: Sequence[dict[str, Any]],
    targets: dict[str, tuple[str, list[str]]],
    llm: LlmEndpoint | None,
    client: httpx.Client | None,
) -> list[dict[str, Any]]:
    """One row per distinct failing prompt: the prompt and its intent-preserving rewrite."""
    near: dict[str, list[str]] = {}
    for caption, (_, case_ids) in sorted(targets.items()):
        for cid in case_ids:
            near.setdefault(cid, []).append(caption)
    rows, seen = [], set()
    for case in cases:
        prompt = " ".join(case["prompt"].split())
        if prompt.lower() in seen:
            continue
        seen.add(prompt.lower())
        details = detail_phrases(near.get(case["case_id"], []))
        rewrite, producer = expand_prompt(prompt, details), "rules:expand"
        if llm is not None and client is not None:
            enhancer = EndpointEnhancer(llm.base_url, llm.model, llm.api_key, llm.timeout_s, client=client)
            try:
                rewrite = enhancer.enhance([prompt])[0]
                producer = f"llm:{llm.model}" if not enhancer.fallbacks else "rules:expand (llm broke intent)"
            except EnhancerError:
                producer = "rules:expand (llm failed)"
        trace = [
            {"op": "drop_request_phrasing", "restore": core_of(prompt), "why": "keep what is asked, not how"},
            {"op": "keep_constraints", "restore": "counts, negations, quoted text", "why": "the model misread them"},
            {
                "op": "add_detail",
                "restore": rewrite,
                "why": "medium, setting, rendering detail",
            },
        ]
        rows.append(
            {
                "prompt": prompt,
                "rewrite": rewrite,
                "badcase_id": case["case_id"],
                "trace": json.dumps(trace, ensure_ascii=False),
                "ops": ["expand"],
                "producer": producer,
                "source_id": case["case_id"],
                "badcase_ids": [case["case_id"]],
            }
        )
    return rows


def export_chat(ws: Workspace, out: Path) -> int:
    """Write the prompt track as chat-format JSONL (`{"messages": [system, user, assistant]}` per line), the
    format prompt enhancers are fine-tuned on; the system message is the one the online enhancer sends."""
    shards = ShardStore(track_dir(ws, "prompt")).shard_paths()
    if not shards:
        raise FileNotFoundError(f"no prompt track in {ws.root}: run `flywheel tracks -w {ws.root} --track prompt`")
    lines = []
    for shard in shards:
        for row in pq.read_table(shard, columns=["prompt", "rewrite"]).to_pylist():
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["rewrite"]},
            ]
            lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, ("\n".join(lines) + "\n").encode("utf-8") if lines else b"")
    return len(lines)


def build(inputs: TrackInputs) -> RewriteResult:
    """The prompt track's builder (flywheel.tracks.registry)."""
    cases = inputs.store.list(track="prompt")
    return rewrite_pairs(inputs.ws, cases, engine=inputs.engine, embedder=inputs.text_embedder, llm=inputs.llm)
