"""RL track: preference pairs from several outputs of one prompt, ranked by the evaluation's reward.

For every prompt with a bad case routed to RL, all its outputs in the store (failing cases and the passing
references of the same `prompt_id`) are ranked by reward; the best output is `chosen`, and every output
whose reward is at least `min_margin` lower is a `rejected` partner. Per-metric margins (chosen - rejected)
are kept so a DPO/GRPO trainer can weight pairs. Cases without sibling outputs (user feedback, mining) can
not form a pair yet; they are counted as `unpaired` (they need new samples of the same prompt).

Chosen and rejected are PNG bytes of the same width x height (a Diffusion-DPO step noises both with the same
noise): stored outputs that are not PNG are re-encoded, and a pair of different sizes is skipped and counted.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from PIL import Image

from flywheel.badcases.store import BadCaseStore
from flywheel.tracks.common import write_track
from flywheel.tracks.registry import TrackInputs
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
        ("margin", pa.float64()),
        ("metric_margins", pa.map_(pa.string(), pa.float64())),
        ("rejected_failure_tags", pa.list_(pa.string())),
        ("badcase_id", pa.string()),
        ("seed_chosen", pa.int64()),
        ("seed_rejected", pa.int64()),
        ("checkpoint", pa.string()),
    ]
)


@dataclass
class PairsResult:
    prompts: int
    pairs: int
    unpaired_cases: int
    path: str | None
    size_mismatches: int = 0


def png_with_size(data: bytes) -> tuple[bytes, tuple[int, int]]:
    """(PNG bytes, (width, height)) of a stored output image; non-PNG images are re-encoded losslessly."""
    with Image.open(io.BytesIO(data)) as im:
        size = im.size
        if im.format == "PNG":
            return data, size
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
        return buf.getvalue(), size


def preference_pairs(
    store: BadCaseStore,
    cases: Sequence[dict[str, Any]],
    *,
    min_margin: float = 0.1,
    stats: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """(pair rows, number of routed cases that had no sibling output to pair with); `stats` gets
    `size_mismatches` (pairs skipped because chosen and rejected differ in size)."""
    stats = stats if stats is not None else {}
    stats.setdefault("size_mismatches", 0)
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
            chosen_png, chosen_size = png_with_size(store.image_file(best["output_image"]).read_bytes())
            rejected_png, rejected_size = png_with_size(store.image_file(other["output_image"]).read_bytes())
            if chosen_size != rejected_size:
                stats["size_mismatches"] += 1
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
                    "chosen_image": chosen_png,
                    "rejected_image": rejected_png,
                    "chosen_case_id": best["case_id"],
                    "rejected_case_id": other["case_id"],
                    "chosen_reward": best["reward"],
                    "rejected_reward": other["reward"],
                    "margin": margin,
                    "metric_margins": list(metrics.items()),
                    "rejected_failure_tags": other["failure_tags"],
                    # the routed case this pair answers: the rejected output when it is one, else the prompt's first
                    "badcase_id": other["case_id"] if other["case_id"] in routed else sorted(routed)[0],
                    "seed_chosen": best["seed"],
                    "seed_rejected": other["seed"],
                    "checkpoint": other["checkpoint"],
                }
            )
            made += 1
        if made == 0:
            unpaired += len(routed)
    return rows, unpaired


def write_rl_track(ws: Workspace, store: BadCaseStore, *, min_margin: float = 0.1) -> PairsResult:
    cases = store.list(track="rl")
    stats: dict[str, int] = {}
    rows, unpaired = preference_pairs(store, cases, min_margin=min_margin, stats=stats)
    if not rows:
        return PairsResult(0, 0, unpaired, None, stats["size_mismatches"])
    table = pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)
    path = write_track(ws, "rl", table, {"min_margin": min_margin, "unpaired_cases": unpaired, **stats})
    return PairsResult(len({r["prompt_id"] for r in rows}), len(rows), unpaired, str(path), stats["size_mismatches"])


def build(inputs: TrackInputs) -> PairsResult:
    """The rl track's builder (flywheel.tracks.registry)."""
    return write_rl_track(inputs.ws, inputs.store, min_margin=inputs.min_margin)
