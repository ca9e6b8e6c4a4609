"""`flywheel demo` end to end: the figures the docs state are the figures the demo produces.

docs/flywheel-loop.md ("Demo") and docs/filter_quality.md quote these numbers; when a change moves one,
this test fails and the docs have to be updated with it.
"""

import pytest
from rich.console import Console

from pipelines.demo.run import run_demo


@pytest.mark.slow
def test_demo_produces_the_documented_figures(tmp_path, ray_session):
    out = run_demo(tmp_path / "demo", console=Console(quiet=True))
    funnel = out["funnel"]
    assert (funnel["rows_in"], funnel["kept"], funnel["rejected"]) == (158, 105, 53)
    assert funnel["removed_by_rule"]["broken"] == 13 and funnel["removed_by_rule"]["near_dup"] == 4
    tracks = out["loop"]["tracks"]
    assert tracks["pretrain"]["written"] == 0 and tracks["pretrain"]["candidates"] == 0
    assert tracks["rl"]["pairs"] == 1
    assert tracks["prompt"]["pairs"] == 7
    routed = out["loop"]["route"]  # "the seven cases route as intended"
    assert routed["routed"] == 7 and routed["by_track"] == {"rl": 2, "pretrain": 3, "prompt": 2}
