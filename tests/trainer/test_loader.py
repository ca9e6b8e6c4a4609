"""The loader honours the T2I/TI2I ratio, buckets by aspect within tolerance, shards across ranks without
overlap, and resumes from a saved position without repeating or skipping rows."""

from __future__ import annotations

import math
from itertools import islice

import numpy as np
import pytest

from flywheel.config import ConfigError
from flywheel.workspace import Workspace
from tests.trainer.fixtures import fixture_rows, write_curated
from trainer.config import DataConfig
from trainer.data.buckets import assign_buckets, make_buckets
from trainer.data.index import build_index, curated_shards
from trainer.data.loader import BatchPlanner, LoaderState, batch_iterator

SIZES = ((64, 64), (96, 64), (64, 96), (112, 64), (48, 48))


def _index(tmp_path, rows, resolutions=(32,), aspects=(1.0, 0.75, 4 / 3, 0.5625, 16 / 9)):
    write_curated(tmp_path, rows=rows, shards=3)
    buckets = make_buckets(list(resolutions), list(aspects), 8)
    return build_index(curated_shards(Workspace.at(tmp_path), ["stage1_256p"]), buckets)


def test_ratio_is_honoured_over_many_batches(tmp_path):
    index = _index(tmp_path, fixture_rows(20, 10, sizes=SIZES))
    planner = BatchPlanner(index, DataConfig(t2i_ratio=0.7, batch_size=2), seed=3)
    tasks = [plan.task for plan, _ in islice(planner.plans(LoaderState()), 2000)]
    share = tasks.count("T2I") / len(tasks)
    assert abs(share - 0.7) < 0.03  # binomial sd at n=2000 is 0.010
    # every row of a batch really has the batch's task and bucket
    for plan, _ in islice(planner.plans(LoaderState()), 50):
        assert {int(index.task_of[r]) for r in plan.rows} == {0 if plan.task == "T2I" else 1}
        assert {index.buckets[int(index.bucket_of[r])] for r in plan.rows} == {plan.bucket}


def test_buckets_match_aspect_within_tolerance():
    aspects = [1.0, 0.75, 4 / 3, 0.5625, 16 / 9]
    buckets = make_buckets([256, 512], aspects, 16)
    rng = np.random.default_rng(0)
    widths = rng.integers(200, 1400, 5000)
    heights = rng.integers(200, 1400, 5000)
    chosen = assign_buckets(widths, heights, buckets)
    logs = np.sort(np.log(aspects))
    half_gap = np.diff(logs).max() / 2
    rounding = math.log((512 + 8) / (512 - 8))  # bucket sides are rounded to multiples of 16
    for w, h, b in zip(widths, heights, chosen, strict=True):
        bucket = buckets[b]
        a = np.log(w / h)
        if logs[0] <= a <= logs[-1]:
            assert abs(a - math.log(bucket.aspect)) <= half_gap + rounding
        assert bucket.width % 16 == 0 and bucket.height % 16 == 0
        # the 512 buckets only take images with at least 512^2 pixels
        assert (bucket.resolution == 512) == (w * h >= 512 * 512)


def test_ranks_take_disjoint_rows_and_resume_neither_repeats_nor_skips(tmp_path):
    index = _index(tmp_path, fixture_rows(24, 0, sizes=((64, 64),)), aspects=(1.0,))
    cfg = DataConfig(t2i_ratio=1.0, batch_size=3)
    ranks = [BatchPlanner(index, cfg, seed=1, rank=r, world=2) for r in range(2)]
    plans = [[p for p, _ in islice(pl.plans(LoaderState()), 4)] for pl in ranks]
    seen = np.concatenate([p.rows for rank in plans for p in rank])
    assert len(seen) == 24 and len(set(seen.tolist())) == 24  # one epoch, each row exactly once

    single = BatchPlanner(index, cfg, seed=1)
    straight = [p.rows for p, _ in islice(single.plans(LoaderState()), 10)]
    it = single.plans(LoaderState())
    first = [next(it) for _ in range(4)]
    saved = LoaderState.from_json(first[-1][1].to_json())
    resumed = [p.rows for p, _ in islice(single.plans(saved), 6)]
    assert all((a == b).all() for a, b in zip(straight, [p.rows for p, _ in first] + resumed, strict=True))


def test_batches_decode_to_bucket_shape_with_dropout_and_workers(tmp_path):
    index = _index(tmp_path, fixture_rows(6, 3, sizes=SIZES))
    cfg = DataConfig(t2i_ratio=0.5, batch_size=2, uncond_dropout=0.5, num_workers=0)
    planner = BatchPlanner(index, cfg, seed=0)
    serial = list(islice(batch_iterator(planner, LoaderState(), 0), 6))
    for batch, _ in serial:
        assert batch.images.shape[2:] == (batch.bucket.height, batch.bucket.width)
        assert float(batch.images.min()) >= -1 and float(batch.images.max()) <= 1
        assert (batch.sources is not None) == (batch.task == "TI2I")
    assert sum(b.dropped for b, _ in serial) == sum(c == "" for b, _ in serial for c in b.captions)
    parallel = list(islice(batch_iterator(planner, LoaderState(), 2), 6))
    assert [b.ids for b, _ in serial] == [b.ids for b, _ in parallel]


def test_missing_task_is_a_clear_error_unless_allowed(tmp_path):
    index = _index(tmp_path, fixture_rows(6, 0, sizes=((64, 64),)))
    with pytest.raises(ConfigError, match="allow_missing_tasks"):
        BatchPlanner(index, DataConfig(t2i_ratio=0.9), seed=0)
    planner = BatchPlanner(index, DataConfig(t2i_ratio=0.9, allow_missing_tasks=True), seed=0)
    assert planner.effective_t2i_ratio == 1.0


def test_missing_curated_recipe_names_the_command(tmp_path):
    with pytest.raises(ConfigError, match="flywheel select"):
        curated_shards(Workspace.at(tmp_path), ["stage1_256p"])
