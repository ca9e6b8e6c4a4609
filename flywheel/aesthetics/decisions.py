"""Annotators' keep/reject verdicts on images, read from a workspace's bad-case store.

Where they live: the dashboard's triage writes each annotator decision to the store's `decisions` table
(`flywheel.badcases`), and user feedback carries a `rating` (1 worst .. 5 best). Read as keep/reject of the
case's output image:
- the latest annotator decision that is not undone: `dismiss` (not a model error) is a keep, any other
  track (the output needs fixing) is a reject; routes made by rules or the learned router are not human
  verdicts and are ignored;
- otherwise a rating: >= 4 keep, <= 2 reject, 3 says nothing;
- otherwise an evaluation `reference` case (an output that passed) is a keep.
Cases without an output image, or whose image file is gone, are skipped. Caveat, stated in
docs/aesthetics.md: a reject may be about the prompt (wrong text, wrong object), not the look of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flywheel.badcases.store import BadCaseStore


@dataclass(frozen=True)
class Verdict:
    case_id: str
    image: Path
    keep: bool
    why: str  # "annotator:<track>", "rating:<r>" or "reference"
    group: str  # prompt id (or prompt): outputs of one prompt form within-prompt preference pairs


def workspace_verdicts(ws_root: Path) -> list[Verdict]:
    """Every keep/reject verdict of the workspace's bad-case store (none when the store does not exist)."""
    from flywheel.workspace import Workspace

    root = Workspace.at(ws_root).badcases_dir
    if not (root / "badcases.sqlite").is_file():
        return []
    store = BadCaseStore(root)
    latest = store.latest_decisions()
    out: list[Verdict] = []
    for kind in ("bad", "reference"):
        for case in store.list(kind=kind):
            digest = case.get("output_image")
            if not digest:
                continue
            image = store.image_file(digest)
            if not image.is_file():
                continue
            track = latest.get(case["case_id"])
            rating = case.get("rating")
            if track is not None:
                keep, why = track == "dismiss", f"annotator:{track}"
            elif rating is not None and rating != 3:
                keep, why = rating >= 4, f"rating:{rating:g}"
            elif kind == "reference":
                keep, why = True, "reference"
            else:
                continue
            group = str(case.get("prompt_id") or case.get("prompt") or case["case_id"])
            out.append(Verdict(case["case_id"], image, keep, why, group))
    return out
