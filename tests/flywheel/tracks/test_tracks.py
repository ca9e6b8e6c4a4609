"""Tracks' data: RL preference pairs from the store, prompt degradation traces, the LLM endpoint path."""

import json

import httpx
import pyarrow.parquet as pq

from flywheel.badcases import BadCaseStore, Route
from flywheel.badcases import ingest_file as ingest
from flywheel.tracks.degrade import degrade
from flywheel.tracks.prompt import LlmEndpoint, rewrite_pairs
from flywheel.tracks.rl import write_rl_track
from flywheel.workspace import Workspace
from tests.flywheel.badcases.test_store import _eval_rows


def test_rl_pairs_rank_outputs_of_one_prompt(tmp_path):
    ws = Workspace.at(tmp_path)
    path = tmp_path / "eval.parquet"
    pq.write_table(_eval_rows(2), path)
    store = BadCaseStore.for_workspace(ws.root)
    ingest(store, path)
    bad = store.list(kind="bad")
    store.record_routes([Route(bad[0]["case_id"], "rl", "rule:test", {})])
    result = write_rl_track(ws, store, min_margin=0.1)
    assert result.pairs == 1 and result.unpaired_cases == 0
    table = pq.read_table(result.path)
    row = table.to_pylist()[0]
    assert row["chosen_reward"] == 0.9 and row["rejected_reward"] == 0.2
    assert abs(row["reward_margin"] - 0.7) < 1e-9 and dict(row["metric_margins"])["label_prob"] > 0.69
    assert row["badcase_ids"] == [bad[0]["case_id"]] and row["chosen_image"].startswith(b"\x89PNG")
    assert json.loads((tmp_path / "tracks" / "rl" / "_manifest.json").read_text())["rows"] == 1


def test_degrade_records_inverse_edits():
    d = degrade("a close-up photo of three red cups on a wooden table", seed=1)
    assert d.target_prompt.startswith("a close-up photo")
    assert "stylistic_simplification" in d.ops and "colloquialisation" in d.ops
    restored = {step["op"]: step["restore"] for step in d.trace}
    assert restored["state_style"] == "a close-up photo of"
    assert d.trace[-1]["op"] == "state_style"  # inverse order: the first degradation is undone last
    assert "close-up" not in d.user_prompt


def test_prompt_track_through_an_openai_compatible_endpoint(tmp_path):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        caption = body["messages"][1]["content"]
        if "fail" in caption:
            return httpx.Response(500, json={"error": "boom"})
        answer = {"user_prompt": "cat pic pls", "trace": [{"op": "restore_detail", "restore": caption, "why": "x"}]}
        return httpx.Response(200, json={"choices": [{"message": {"content": json.dumps(answer)}}]})

    cases = [
        {"case_id": "c1", "prompt": "a ginger tabby cat sitting on a red sofa by the window"},
        {"case_id": "c2", "prompt": "please fail this long prompt about a dog in a green park"},
    ]
    client = httpx.Client(transport=httpx.MockTransport(handler))
    result = rewrite_pairs(
        Workspace.at(tmp_path),
        cases,
        engine=None,
        embedder=None,
        llm=LlmEndpoint("http://llm.local/v1", "m"),
        client=client,
    )
    assert result.pairs == 2 and result.llm_failures == 1 and len(calls) == 2
    rows = {r["source_id"]: r for r in pq.read_table(result.path).to_pylist()}
    assert rows["c1"]["producer"] == "llm:m" and rows["c1"]["user_prompt"] == "cat pic pls"
    assert rows["c2"]["producer"] == "rules (llm failed)" and json.loads(rows["c2"]["trace"])
