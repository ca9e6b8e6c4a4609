"""Tiny curated-shard generator: PIL-drawn shapes, a few T2I rows and a few TI2I rows, in the core columns.

Why its own generator: the trainer reads `WORKSPACE/curated/<recipe>/part-*.parquet` as `flywheel select`
writes it; tests need such shards in milliseconds, with known sizes and tasks, without running scoring.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from flywheel.ids import sample_id
from flywheel.schema import core_schema
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")


def draw_shape(
    shape: str, color: str, size: tuple[int, int], background: tuple[int, int, int] = (245, 245, 240)
) -> Image.Image:
    w, h = size
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    box = (w * 0.2, h * 0.2, w * 0.8, h * 0.8)
    if shape == "circle":
        draw.ellipse(box, fill=COLORS[color])
    elif shape == "square":
        draw.rectangle(box, fill=COLORS[color])
    else:
        draw.polygon([(w * 0.5, h * 0.15), (w * 0.85, h * 0.85), (w * 0.15, h * 0.85)], fill=COLORS[color])
    return image


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def fixture_rows(
    n_t2i: int = 6, n_ti2i: int = 2, sizes: tuple[tuple[int, int], ...] = ((64, 64),), seed: int = 0
) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    colors = list(COLORS)
    for i in range(n_t2i + n_ti2i):
        size = sizes[i % len(sizes)]
        shape, color = SHAPES[i % len(SHAPES)], colors[int(rng.integers(len(colors)))]
        task = "T2I" if i < n_t2i else "TI2I"
        image = draw_shape(shape, color, size)
        source = None
        caption = f"a {color} {shape} on a white background"
        if task == "TI2I":
            other = colors[(colors.index(color) + 1) % len(colors)]
            source = png(draw_shape(shape, other, size))
            caption = f"make the {shape} {color}"
        data = png(image)
        rows.append(
            {
                "id": sample_id("fixture", f"fixture#{i}", f"fixture#{i}.src" if source else None),
                "source": "fixture",
                "uri": f"fixture#{i}",
                "partition": 0,
                "image": data,
                "file_bytes": len(data),
                "width": size[0],
                "height": size[1],
                "format": "PNG",
                "caption": caption,
                "task": task,
                "source_image": source,
                "source_uri": f"fixture#{i}.src" if source else None,
                "meta": json.dumps({"shape": shape}),
            }
        )
    return rows


def write_curated(
    workspace: Path,
    recipe: str = "stage1_256p",
    rows: list[dict[str, object]] | None = None,
    shards: int = 1,
    row_group_size: int = 4,
) -> list[Path]:
    """Write rows into `workspace/curated/<recipe>/part-NNNNN.parquet` (split into `shards` files) through the
    shard store, with completion markers, as `flywheel select` does."""
    rows = rows if rows is not None else fixture_rows()
    folder = workspace / "curated" / recipe
    folder.mkdir(parents=True, exist_ok=True)
    store = Workspace.at(workspace).curated_store(recipe)
    paths = []
    for s, part in enumerate(np.array_split(np.arange(len(rows)), shards)):
        table = pa.Table.from_pylist([rows[i] for i in part], schema=core_schema())
        store.write(s, table, fingerprint=f"fixture:{s}", row_group_size=row_group_size)
        paths.append(store.shard_path(s))
    meta = Workspace.at(workspace).selection_dir(recipe)  # bookkeeping lives beside, not inside, curated/
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "funnel.json").write_text(json.dumps({"rows_in": len(rows), "kept": len(rows)}))
    return paths


def write_mix(
    workspace: Path,
    rows: list[dict[str, object]],
    weight: float,
    recipe: str = "stage1_256p",
    source: str = "tracks/pretrain",
    provenance: list[str] | None = None,
) -> Path:
    """Track rows mixed into `recipe` as `flywheel select` writes them (docs/flywheel-loop.md, `mix:`): a
    ShardStore at `WS/mix/<recipe>/<source with / -> ->` with `badcase_id` and `provenance`, listed in
    `selections/<recipe>/mix.json` with its weight."""
    slug = source.replace("/", "-")
    folder = workspace / "mix" / recipe / slug
    store = ShardStore(folder)
    if rows:
        table = pa.Table.from_pylist(rows, schema=core_schema())
        prov = provenance or ["pool"] * len(rows)
        table = table.append_column("badcase_id", pa.array([f"case{i % 3}" for i in range(len(rows))]))
        table = table.append_column("provenance", pa.array(prov))
        store.write(0, table, fingerprint=f"mix:{recipe}:{source}", row_group_size=4)
    store.write_manifest({"recipe": recipe, "from": source, "weight": weight})
    manifest = Workspace.at(workspace).selection_dir(recipe) / "mix.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    entries = json.loads(manifest.read_text())["sources"] if manifest.is_file() else []
    entries.append(
        {"from": source, "weight": weight, "rules": "quality", "dir": f"mix/{recipe}/{slug}", "kept": len(rows)}
    )
    manifest.write_text(json.dumps({"recipe": recipe, "sources": entries}))
    return folder


def pair_rows(n: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> list[dict[str, object]]:
    """Preference pairs in the `tracks/rl` format: chosen = the prompt's shape and colour drawn cleanly,
    rejected = the same drawing washed out with noise (a degraded output), same size."""
    rng = np.random.default_rng(seed)
    colors = list(COLORS)
    rows = []
    for i in range(n):
        shape, color = SHAPES[i % len(SHAPES)], colors[i % len(colors)]
        chosen = draw_shape(shape, color, size)
        arr = np.asarray(chosen, dtype=np.float32)
        noisy = 0.5 * arr + 0.5 * rng.uniform(0, 255, arr.shape)
        rejected = Image.fromarray(noisy.clip(0, 255).astype(np.uint8))
        rows.append(
            {
                "prompt": f"a {color} {shape} on a white background",
                "chosen_image": png(chosen),
                "rejected_image": png(rejected),
                "chosen_reward": 0.9,
                "rejected_reward": 0.2,
                "margin": 0.7,
                "badcase_id": f"case{i:04d}",
                "seed_chosen": 0,
                "seed_rejected": 1,
                "checkpoint": "base-step-0000010",
                "task": "T2I",
            }
        )
    return rows


def write_pairs(workspace: Path, rows: list[dict[str, object]], track: str = "tracks/rl") -> Path:
    store = ShardStore(workspace / track)
    store.write(0, pa.Table.from_pylist(rows), fingerprint="fixture-pairs", row_group_size=4)
    store.write_manifest({"track": track})
    return store.root
