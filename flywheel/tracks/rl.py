"""RL track: preference pairs from several outputs of one prompt, ranked by the evaluation's reward.

For every prompt with a bad case routed to RL, all its outputs in the store (failing cases and the passing
references of the same `prompt_id`) are ranked by reward; the best output is `chosen`, and every output
whose reward is at least `min_margin` lower is a `rejected` partner. Per-metric margins (chosen - rejected)
are kept so a DPO/GRPO trainer can weight pairs. Cases without sibling outputs (user feedback, mining) can
not form a pair yet; they are counted as `unpaired` (they need new samples of the same prompt).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from flywheel.badcases.store import BadCaseStore
from flywheel.tracks.common import write_track
from flywheel.workspace import Workspace

PAIR_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("prompt_id", pa.string()),
        ("prompt", pa.string()),
        ("task", pa.string()),
        ("source_image", pa.binary()),
        ("chosen_image", pa.binary()),
        ("rejected_image", pa.binary()),
        ("chosen_case_id", pa.string()),
        ("rejected_case_id", pa.string()),
        ("chosen_reward", pa.float64()),
        ("rejected_reward", pa.float64()),
        ("reward_margin", pa.float64()),
        ("metric_margins", pa.map_(pa.string(), pa.float64())),
        ("rejected_failure_tags", pa.list_(pa.string())),
        ("badcase_ids", pa.list_(pa.string())),
        ("checkpoint", pa.string()),
    ]
)


@dataclass
class PairsResult:
    prompts: int
    pairs: int
    unpaired_cases: int
    path: str | None


def preference_pairs(
    store: BadCaseStore, cases: Sequence[dict[str, Any]], *, min_margin: float = 0.1
) -> tuple[list[dict[str, Any]], int]:
    """(pair rows, number of routed cases that had no sibling output to pair with)."""
    routed_by_prompt: dict[str, list[str]] = defaultdict(list)
    unpaired = 0
    for c in cases:
        if c["prompt_id"] and c["reward"] is not None and c["output_image"]:
            routed_by_prompt[c["prompt_id"]].append(c["case_id"])
        else:
            unpaired += 1
    siblings: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in store.list(kind=None):
        if c["prompt_id"] in routed_by_prompt and c["reward"] is not None and c["output_image"]:
            siblings[c["prompt_id"]].append(c)
    rows = []
    for prompt_id, routed in routed_by_prompt.items():
        outs = sorted(siblings[prompt_id], key=lambda c: (-c["reward"], c["case_id"]))
        best = outs[0]
        made = 0
        for other in outs[1:]:
            margin = best["reward"] - other["reward"]
            if margin < min_margin:
                continue
            metrics = {
                k: best["metrics"][k] - other["metrics"][k]
                for k in sorted(set(best["metrics"]) & set(other["metrics"]))
            }
            rows.append(
                {
                    "pair_id": hashlib.blake2b(
                        f"{best['case_id']}>{other['case_id']}".encode(), digest_size=8
                    ).hexdigest(),
                    "prompt_id": prompt_id,
                    "prompt": best["prompt"],
                    "task": best["task"],
                    "source_image": store.image_file(best["input_image"]).read_bytes() if best["input_image"] else None,
                    "chosen_image": store.image_file(best["output_image"]).read_bytes(),
                    "rejected_image": store.image_file(other["output_image"]).read_bytes(),
                    "chosen_case_id": best["case_id"],
                    "rejected_case_id": other["case_id"],
                    "chosen_reward": best["reward"],
                    "rejected_reward": other["reward"],
                    "reward_margin": margin,
                    "metric_margins": list(metrics.items()),
                    "rejected_failure_tags": other["failure_tags"],
                    "badcase_ids": sorted(set(routed) & {best["case_id"], other["case_id"]}) or sorted(routed),
                    "checkpoint": other["checkpoint"],
                }
            )
            made += 1
        if made == 0:
            unpaired += len(routed)
    return rows, unpaired


def write_rl_track(ws: Workspace, store: BadCaseStore, *, min_margin: float = 0.1) -> PairsResult:
    cases = store.list(track="rl")
    rows, unpaired = preference_pairs(store, cases, min_margin=min_margin)
    if not rows:
        return PairsResult(0, 0, unpaired, None)
    table = pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)
    path = write_track(ws, "rl", table, {"min_margin": min_margin, "unpaired_cases": unpaired})
    return PairsResult(len({r["prompt_id"] for r in rows}), len(rows), unpaired, str(path))
