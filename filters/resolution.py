"""Resolution filter: sizes from the header, so it costs nothing beyond the decode probe."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from filters.base import CpuScorer, SampleBatch
from flywheel.schema import Column


class ResolutionScorer(CpuScorer):
    name = "resolution"
    columns = (
        Column("resolution_min_side", pa.int32(), "px", "Shorter side of the stored image.", owner="resolution"),
        Column("resolution_max_side", pa.int32(), "px", "Longer side of the stored image.", owner="resolution"),
        Column("resolution_aspect", pa.float32(), "ratio", "Long side / short side (>= 1).", owner="resolution"),
        Column("resolution_megapixels", pa.float32(), "MP", "width * height / 1e6.", owner="resolution"),
    )

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        out: dict[str, list[Any]] = {c.name: [] for c in self.columns}
        for d in batch.decoded:
            if not d.width or not d.height:
                for values in out.values():
                    values.append(None)
                continue
            short, long = sorted((d.width, d.height))
            out["resolution_min_side"].append(short)
            out["resolution_max_side"].append(long)
            out["resolution_aspect"].append(long / short)
            out["resolution_megapixels"].append(d.width * d.height / 1e6)
        return out
