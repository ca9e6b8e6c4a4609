"""Bad-case mining: how far a confirmed failure reaches, and which training samples may have taught it.

Two kinds, both written to the bad-case store with `source = mining` and their provenance as JSON in
`origin` (`{"mined_by": "probe" | "data_suspect", "of": <case id>, ...}`):

- **Probes.** For each confirmed failure (a routed evaluation or feedback case), the nearest prompts of the
  evaluation prompt bank and the nearest pool captions (MiniLM caption space) become probe prompts; the
  caller generates and scores them (the trainer's evaluation) and `probe_cases` turns the scored outputs
  into cases: failing ones `bad`, passing ones `reference` (several seeds per probe share a `prompt_id`, so
  the RL track can pair them). `reach` says how far the failure reaches: the share of its probes that fail,
  and that share weighted by similarity.
- **Data suspects.** Curated (training) samples whose captions match a failing prompt but whose scores are
  poor relative to the curated set (below its 10th percentile on a quality score, or a caption issue):
  candidates for the data team, since the model may have learnt the failure from them.

This module is the core's half: it knows no trainer; `pipelines/steps/mine.py` supplies generation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np

from flywheel.badcases.schema import BadCase
from flywheel.badcases.store import BadCaseStore
from flywheel.retrieval.engine import IndexError_, RetrievalEngine
from flywheel.retrieval.space import TextEmbedder
from flywheel.tracks import registry
from flywheel.workspace import Workspace

# Scores where higher is better that a data suspect is compared on (the curated set's 10th percentile).
SUSPECT_SCORES = ("clip_score", "entropy_bits", "rotation_net_upright_prob", "rotation_upright_prob")


@dataclass
class MiningConfig:
    k_bank: int = 3  # probes per failure from the evaluation prompt bank
    k_pool: int = 3  # probes per failure from pool captions
    min_similarity: float = 0.4  # a probe must be at least this close to the failing prompt
    suspect_similarity: float = 0.6  # a training caption must be this close to count as matching
    suspect_k: int = 20
    suspect_quantile: float = 0.1


@dataclass(frozen=True)
class Probe:
    """A prompt near a failure, with the expectations it is scored against."""

    of: str  # the failure's case id
    prompt: str
    similarity: float
    came_from: str  # "eval_bank:<prompt_id>" | "pool_caption:<sample id>"
    category: str = "scene"
    task: str = "T2I"
    expected_text: str | None = None
    expected_label: str | None = None

    @property
    def prompt_id(self) -> str:
        return "probe:" + hashlib.blake2b(self.prompt.encode(), digest_size=6).hexdigest()


@dataclass
class Reach:
    case_id: str
    prompt: str
    probes: int
    failed_probes: int
    reach: float
    weighted_reach: float
    failing: list[str] = field(default_factory=list)


def confirmed_failures(store: BadCaseStore) -> list[dict[str, Any]]:
    """Bad cases with a track other than dismiss, not themselves mined (mining does not recurse)."""
    return [c for c in store.list(kind="bad") if c["track"] in registry.routable() and c["source"] != "mining"]


def prompt_bank(store: BadCaseStore, extra: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Distinct evaluation prompts (store and `extra`, e.g. the prompt sets on disk) with their expectations."""
    bank: dict[str, dict[str, Any]] = {}
    for c in [*extra, *store.list(kind=None, source="evaluation")]:
        if c.get("task", "T2I") != "T2I" or not c.get("prompt"):
            continue
        bank.setdefault(
            c["prompt"],
            {
                "prompt": c["prompt"],
                "prompt_id": c.get("prompt_id") or c.get("id") or "",
                "category": c.get("category") or "scene",
                "expected_text": c.get("expected_text"),
                "expected_label": c.get("expected_label"),
            },
        )
    return list(bank.values())


def _expectations(failure: dict[str, Any], prompt: str, own: dict[str, Any] | None) -> dict[str, Any]:
    """What a probe is scored on: the failure's expected label/text when the probe names it, else its own."""
    low = prompt.lower()
    if failure.get("expected_label") and failure["expected_label"].lower() in low:
        return {"category": "object", "expected_label": failure["expected_label"], "expected_text": None}
    if failure.get("expected_text") and failure["expected_text"].lower() in low:
        return {"category": "text", "expected_text": failure["expected_text"], "expected_label": None}
    if own is not None:
        return {k: own.get(k) for k in ("category", "expected_text", "expected_label")}
    return {"category": "scene", "expected_text": None, "expected_label": None}


def probe_prompts(
    failures: Sequence[dict[str, Any]],
    bank: Sequence[dict[str, Any]],
    embedder: TextEmbedder,
    engine: RetrievalEngine | None,
    cfg: MiningConfig | None = None,
) -> list[Probe]:
    """Probe prompts near each failure (T2I failures only: edits need source images to probe)."""
    cfg = cfg or MiningConfig()
    failures = [f for f in failures if (f.get("task") or "T2I") == "T2I"]
    if not failures:
        return []
    fvecs = embedder.embed_texts([f["prompt"] for f in failures])
    bvecs = embedder.embed_texts([b["prompt"] for b in bank]) if bank else np.zeros((0, fvecs.shape[1]), np.float32)
    caption_table = None
    if engine is not None and cfg.k_pool:
        try:
            caption_table = engine.find("caption", text_queries=True)
        except IndexError_:
            caption_table = None
        if caption_table is not None and caption_table.space != embedder.space:
            caption_table = None
    out: list[Probe] = []
    for failure, vec in zip(failures, fvecs, strict=True):
        own = " ".join(failure["prompt"].split()).lower()
        sims = bvecs @ vec if len(bank) else np.zeros(0)
        picked = 0
        for j in np.argsort(-sims):
            if picked >= cfg.k_bank or sims[j] < cfg.min_similarity:
                break
            b = bank[int(j)]
            if " ".join(b["prompt"].split()).lower() == own:
                continue
            out.append(
                Probe(
                    failure["case_id"],
                    b["prompt"],
                    float(sims[j]),
                    f"eval_bank:{b['prompt_id']}",
                    **_expectations(failure, b["prompt"], b),
                )
            )
            picked += 1
        if caption_table is None:
            continue
        hits = engine.search(
            caption_table.name, vec, k=cfg.k_pool * 3 + 1, where="caption IS NOT NULL", columns=["id", "caption"]
        )
        seen, picked = {p.prompt for p in out if p.of == failure["case_id"]}, 0
        for sid, caption, sim in zip(
            hits.column("id").to_pylist(),
            hits.column("caption").to_pylist(),
            hits.column("similarity").to_pylist(),
            strict=True,
        ):
            text = " ".join(str(caption).split())
            if picked >= cfg.k_pool or sim < cfg.min_similarity:
                break
            if text.lower() == own or text in seen:
                continue
            seen.add(text)
            out.append(
                Probe(failure["case_id"], text, float(sim), f"pool_caption:{sid}", **_expectations(failure, text, None))
            )
            picked += 1
    return out


def _key(*parts: object) -> str:
    return hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def probe_cases(
    store: BadCaseStore, probes: Sequence[Probe], rows: Sequence[dict[str, Any]], run: str
) -> list[BadCase]:
    """Scored probe outputs (evaluation-schema rows, `prompt` = probe prompt) -> mined cases."""
    by_prompt: dict[str, list[Probe]] = {}
    for p in probes:
        by_prompt.setdefault(p.prompt, []).append(p)
    cases = []
    for row in rows:
        for probe in by_prompt.get(row["prompt"], []):
            metrics = dict(row["metrics"] or []) if isinstance(row["metrics"], list) else dict(row["metrics"] or {})
            origin = {"mined_by": "probe", "of": probe.of, "from": probe.came_from, "similarity": probe.similarity}
            origin["run"] = run
            cases.append(
                BadCase(
                    content_key=_key("mining", "probe", probe.of, probe.prompt, row["seed"], row["checkpoint"]),
                    kind="reference" if row["passed"] else "bad",
                    source="mining",
                    prompt=probe.prompt,
                    origin=json.dumps(origin, sort_keys=True),
                    prompt_id=probe.prompt_id,
                    task="T2I",
                    # as scored: the caller may drop an expectation its evaluator cannot judge
                    category=row.get("category", probe.category),
                    expected_text=row.get("expected_text", probe.expected_text),
                    expected_label=row.get("expected_label", probe.expected_label),
                    output_image=store.put_image(row["output_image"], f"probe {probe.prompt_id}"),
                    seed=row["seed"],
                    metrics=metrics,
                    reward=row["reward"],
                    failure_tags=list(row["failure_tags"] or []),
                    checkpoint=row["checkpoint"],
                    step=row["step"],
                    complaint=f"probe near failing case {probe.of} (similarity {probe.similarity:.2f})",
                )
            )
    return cases


def reach(failures: Sequence[dict[str, Any]], probes: Sequence[Probe], rows: Sequence[dict[str, Any]]) -> list[Reach]:
    """Per failure: how many of its probes fail (any seed failing counts the probe as failing)."""
    failed_prompts = {r["prompt"] for r in rows if not r["passed"]}
    scored = {r["prompt"] for r in rows}
    out = []
    for f in failures:
        mine = [p for p in probes if p.of == f["case_id"] and p.prompt in scored]
        if not mine:
            continue
        fails = [p for p in mine if p.prompt in failed_prompts]
        weights = sum(p.similarity for p in mine)
        out.append(
            Reach(
                f["case_id"],
                f["prompt"],
                len(mine),
                len(fails),
                len(fails) / len(mine),
                sum(p.similarity for p in fails) / weights if weights else 0.0,
                [p.prompt for p in fails],
            )
        )
    return out


def _curated_scores(ws: Workspace) -> tuple[list[str], list[str], duckdb.DuckDBPyConnection]:
    """(score columns present, curated shard paths, a connection); shards are read per query, by projection."""
    import pyarrow.parquet as pq

    files = [str(p) for r in ws.curated_recipes() for p in ws.curated_store(r).shard_paths()]
    con = duckdb.connect()
    if not files:
        return [], files, con
    names = set().union(*(pq.read_schema(f).names for f in files))
    present = [c for c in SUSPECT_SCORES if c in names] + (["caption_issue"] if "caption_issue" in names else [])
    return present, files, con


def data_suspects(
    ws: Workspace,
    store: BadCaseStore,
    failures: Sequence[dict[str, Any]],
    embedder: TextEmbedder,
    engine: RetrievalEngine,
    cfg: MiningConfig | None = None,
    run: str = "",
) -> list[BadCase]:
    """Curated samples matching a failing prompt whose scores are below the curated set's low quantile."""
    cfg = cfg or MiningConfig()
    columns, files, con = _curated_scores(ws)
    if not columns or not failures:
        return []
    scores = [c for c in columns if c != "caption_issue"]
    floors = {}
    for c in scores:
        floors[c] = con.execute(
            f'SELECT quantile_cont("{c}", ?) FROM read_parquet(?, union_by_name=true)', [cfg.suspect_quantile, files]
        ).fetchall()[0][0]
    try:
        table = engine.find("caption", text_queries=True)
    except IndexError_:
        return []
    if table.space != embedder.space:
        return []
    cases = []
    for failure, vec in zip(failures, embedder.embed_texts([f["prompt"] for f in failures]), strict=True):
        hits = engine.search(table.name, vec, k=cfg.suspect_k, where="curated = true", columns=["id", "caption"])
        for sid, sim in zip(hits.column("id").to_pylist(), hits.column("similarity").to_pylist(), strict=True):
            if sim < cfg.suspect_similarity:
                continue
            row = con.sql(
                f"SELECT id, caption, image, {', '.join(columns)} FROM read_parquet(?, union_by_name=true) "
                "WHERE id = ? LIMIT 1",
                params=[files, sid],
            ).to_arrow_table()
            if row.num_rows == 0:
                continue
            rec = row.to_pylist()[0]
            poor = {
                c: (rec[c], floors[c])
                for c in scores
                if rec[c] is not None and floors[c] is not None and rec[c] < floors[c]
            }
            issue = rec.get("caption_issue")
            if not poor and not issue:
                continue
            why = [f"{c} {v:.3g} < curated p{round(100 * cfg.suspect_quantile)} {f:.3g}" for c, (v, f) in poor.items()]
            if issue:
                why.append(f"caption issue {issue}")
            origin = {"mined_by": "data_suspect", "of": failure["case_id"], "sample_id": sid, "similarity": float(sim)}
            origin["run"] = run
            cases.append(
                BadCase(
                    content_key=_key("mining", "suspect", failure["case_id"], sid),
                    kind="bad",
                    source="mining",
                    prompt=rec["caption"] or failure["prompt"],
                    origin=json.dumps(origin, sort_keys=True),
                    category=failure.get("category"),
                    expected_label=failure.get("expected_label"),
                    expected_text=failure.get("expected_text"),
                    output_image=store.put_image(rec["image"], f"curated sample {sid}") if rec["image"] else None,
                    metrics={c: float(v) for c, (v, _) in poor.items()},
                    complaint=(
                        f"training sample {sid} matches failing prompt {failure['prompt']!r} "
                        f"(similarity {sim:.2f}) but scores poorly: " + "; ".join(why)
                    ),
                )
            )
    return cases


def reach_json(items: Sequence[Reach]) -> list[dict[str, Any]]:
    return [asdict(r) for r in items]
