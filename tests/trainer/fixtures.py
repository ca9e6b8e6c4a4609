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
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from flywheel.ids import sample_id
from flywheel.schema import core_schema
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
    """Write rows into `workspace/curated/<recipe>/part-NNNNN.parquet` (split into `shards` files)."""
    rows = rows if rows is not None else fixture_rows()
    folder = workspace / "curated" / recipe
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, part in enumerate(np.array_split(np.arange(len(rows)), shards)):
        table = pa.Table.from_pylist([rows[i] for i in part], schema=core_schema())
        path = folder / f"part-{s:05d}.parquet"
        pq.write_table(table, path, row_group_size=row_group_size)
        paths.append(path)
    meta = Workspace.at(workspace).selection_dir(recipe)  # bookkeeping lives beside, not inside, curated/
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "funnel.json").write_text(json.dumps({"rows_in": len(rows), "kept": len(rows)}))
    return paths
