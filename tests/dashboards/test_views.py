"""Each data view: the chart it draws matches the workspace (one test per view)."""

from __future__ import annotations

import json
import re

import pytest

from dashboards.views import VIEWS
from dashboards.views.embedding import project


@pytest.fixture()
def eng(login):
    return login("eng")


def _funnel(ws) -> dict:
    return json.loads(ws.funnel_path("tiny").read_text())


def test_every_registered_view_renders(eng):
    assert {v.slug for v in VIEWS} >= {"funnel", "histograms", "rejected", "categories", "embedding"}
    for view in VIEWS:
        assert eng.get(f"/data/{view.slug}").status_code == 200, view.slug


def test_funnel_has_one_bar_per_rule(eng, ws):
    page = eng.get("/data/funnel").text
    rules = [r["name"] for r in _funnel(ws)["rules"]]
    assert re.findall(r'<rect class="bar" data-label="([^"]+)"', page) == rules
    assert eng.get("/data/funnel?recipe=nope").status_code == 404


def test_histograms_draw_recipe_thresholds(eng):
    page = eng.get("/data/histograms").text
    assert "<h2>entropy_bits</h2>" in page and "entropy.min = 2" in page and "nsfw.max = 0.7" in page
    # 48 pool rows, 40 bins: the bin counts of one histogram add up to the non-null rows
    section = page.split("<h2>entropy_bits</h2>", 1)[1].split("</svg>", 1)[0]
    counts = [int(n) for n in re.findall(r"\): (\d+)</title></rect>", section)]
    assert sum(counts) == 48


def test_rejected_gallery_pages_per_reason(eng, ws):
    by_reason = _funnel(ws)["removed_by_rule"]
    page = eng.get("/data/rejected?reason=entropy").text
    assert page.count('<figure><a href="/data/sample/') == by_reason["entropy"]
    assert "flat image" in page and "entropy_bits = " in page
    sample = re.search(r'href="(/data/sample/[0-9a-f]+\?recipe=tiny)"', page).group(1)
    detail = eng.get(sample).text
    assert "Rejected by" in detail and "entropy" in detail and "nsfw_score" in detail and "/full" in detail
    assert eng.get("/data/rejected?page=x").status_code == 400


def test_categories_count_kept_and_rejected(eng, ws):
    page = eng.get("/data/categories").text
    rows = re.findall(r"<tr><td>(cat|dog|car)</td><td>(\d+)</td><td>(\d+)</td>", page)
    assert {r[0] for r in rows} == {"cat", "dog", "car"}
    assert sum(int(k) for _, k, _ in rows) == _funnel(ws)["kept"]
    assert sum(int(k) + int(r) for _, k, r in rows) == 48


def test_embedding_map_points_and_colouring(eng):
    page = eng.get("/data/embedding").text
    assert page.count('<circle class="pt"') == 48
    assert 'data-group="curated"' in page and 'data-group="rejected"' in page
    by_cat = eng.get("/data/embedding?by=category").text
    assert 'data-group="cat"' in by_cat and 'data-group="dog"' in by_cat
    assert eng.get("/data/embedding?by=colour").status_code == 400


def test_pca_projection_keeps_the_widest_direction():
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0, 10, 200), rng.normal(0, 1, 200), rng.normal(0, 0.1, 200)], axis=1)
    xy = project(x)
    assert xy.shape == (200, 2) and xy[:, 0].std() > 5 * xy[:, 1].std()


def test_badcases_over_time_per_track_and_source(eng):
    page = eng.get("/data/badcases").text
    assert 'data-name="pretrain"' in page and 'data-name="unrouted"' in page
    for source in ("evaluation", "mining", "feedback"):
        assert f'data-name="{source}"' in page
    totals = re.findall(r"<tr><td>(evaluation|mining|feedback)</td><td>\w+</td><td>(\d+)</td>", page)
    assert sum(int(n) for _, n in totals) == 420


def test_training_loss_from_run_logs(eng):
    page = eng.get("/data/training").text
    assert 'data-name="stage1_tiny_cpu"' in page
    assert "<td>100</td><td>0.0100</td><td>10</td>" in page  # last step, its loss, the valid lines only


def test_evaluation_metrics_per_checkpoint(eng):
    page = eng.get("/data/evaluations").text
    assert "stage1-step-0000020" in page and "55.0%" in page and 'data-name="object"' in page


def test_wheel_turns_chart_before_and_after_per_category(eng, ws):
    assert "no turns yet" in eng.get("/data/turns").text

    def report(n: int, before: float, after: float, prompt: dict | None = None) -> None:
        folder = ws.root / "turns" / f"turn-{n:04d}"
        folder.mkdir(parents=True)
        cats = {
            "scene": {
                "outputs": 4,
                "pass_rate_before": before,
                "pass_rate_after": after,
                "pass_rate_delta": after - before,
                "mean_reward_before": 0.4,
                "mean_reward_after": 0.6,
                "mean_reward_delta": 0.2,
            },
            "text": {
                "outputs": 4,
                "pass_rate_before": None,
                "pass_rate_after": 0.25,
                "pass_rate_delta": None,
                "mean_reward_before": None,
                "mean_reward_after": 0.3,
                "mean_reward_delta": None,
            },
        }
        data = {
            "before": "a",
            "after": f"ckpt-{n}",
            "pass_rate_before": before,
            "pass_rate_after": after,
            "categories": cats,
        }
        if prompt:
            data["prompt_track"] = prompt
        (folder / "report.json").write_text(json.dumps(data))

    report(1, 0.25, 0.5)
    rewrite = {
        "pairs": 3,
        "prompts": ["s"],
        "before": {"outputs": 2, "pass_rate": 0.0, "mean_reward": 0.2},
        "after": {"outputs": 2, "pass_rate": 0.5, "mean_reward": 0.4},
        "pass_rate_delta": 0.5,
    }
    report(2, 0.5, 0.75, rewrite)
    page = eng.get("/data/turns").text
    # latest turn: per category a before and an after bar; "text" has no earlier figure, so only an after bar
    bars = re.findall(r'<rect class="bar" data-label="([^"]+)" data-series="([^"]+)"', page)
    assert ("scene", "before") in bars and ("scene", "after") in bars
    assert ("text", "after") in bars and ("text", "before") not in bars
    assert ("pass rate", "rewritten") in bars and "offline enhancer" in page
    assert "scene after: 0.75" in page and "50.0% -&gt; 75.0%" in page
    assert "+50.0 pt" in page  # turn 2's prompt-track change in the table
    assert eng.get("/data/turns?turn=turn-0001").text.count("scene after: 0.5<") == 1
    assert eng.get("/data/turns?turn=turn-0009").status_code == 404
