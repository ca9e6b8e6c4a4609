"""Tracks' data: RL preference pairs from the store, prompt degradation traces, the LLM endpoint path."""

import json

import httpx
import pyarrow.parquet as pq

from flywheel.badcases import BadCaseStore, Route
from flywheel.badcases import ingest_file as ingest
from flywheel.enhancer import SYSTEM_PROMPT
from flywheel.tracks.degrade import degrade
from flywheel.tracks.prompt import LlmEndpoint, rewrite_pairs
from flywheel.tracks.rewrite import intent_violations
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
    assert abs(row["margin"] - 0.7) < 1e-9 and dict(row["metric_margins"])["label_prob"] > 0.69
    assert row["badcase_id"] == bad[0]["case_id"] and row["chosen_image"].startswith(b"\x89PNG")
    assert row["rejected_image"].startswith(b"\x89PNG") and row["seed_chosen"] != row["seed_rejected"]
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
    """Case rewrites go through the enhancer endpoint; degradations of detailed prompts through `degrade`."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        if "fail" in user:
            return httpx.Response(500, json={"error": "boom"})
        if system == SYSTEM_PROMPT:  # enhancer: rewrite, keeping the request
            content = f"A detailed photo of {user}, soft window light"
        else:  # degradation of a detailed caption
            content = json.dumps({"user_prompt": "cat pic pls", "trace": [{"op": "restore_detail", "restore": user}]})
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

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
    assert result.pairs == 4 and result.llm_failures == 1 and len(calls) == 4
    rows = pq.read_table(result.path).to_pylist()
    expand = {r["badcase_id"]: r for r in rows if r["ops"] == ["expand"]}
    assert expand["c1"]["producer"] == "llm:m" and expand["c1"]["rewrite"].startswith("A detailed photo of a ginger")
    assert expand["c2"]["producer"] == "rules:expand (llm failed)"
    assert not intent_violations(expand["c2"]["prompt"], expand["c2"]["rewrite"])
    degraded = {r["source_id"]: r for r in rows if r["ops"] != ["expand"]}
    assert degraded["c1"]["producer"] == "llm:m" and degraded["c1"]["prompt"] == "cat pic pls"
    assert degraded["c2"]["producer"] == "rules (llm failed)" and json.loads(degraded["c2"]["trace"])


def test_prompt_track_rewrite_keeps_counts_and_negations(tmp_path):
    """The issue's example: the nearest curated caption must not become the target of the case."""

    class Engine:  # the nearest curated caption of the case is the contradicting one
        def find(self, field, text_queries):
            return type("T", (), {"name": "caption"})()

        def search(self, table, vec, k, where, columns):
            import pyarrow as pa

            return pa.table({"id": ["s1"], "caption": ["a coffee cup and saucer on a wooden table"]})

    class Embedder:
        def embed_texts(self, texts):
            return [[0.0] for _ in texts]

    case = {"case_id": "c9", "prompt": "three coffee cups, no saucers"}
    result = rewrite_pairs(Workspace.at(tmp_path), [case], engine=Engine(), embedder=Embedder())
    rows = pq.read_table(result.path).to_pylist()
    (mine,) = [r for r in rows if r["ops"] == ["expand"]]
    assert mine["prompt"] == "three coffee cups, no saucers" and "three coffee cups, no saucers" in mine["rewrite"]
    assert "on a wooden table" in mine["rewrite"] and not intent_violations(mine["prompt"], mine["rewrite"])
    assert intent_violations(mine["prompt"], "a coffee cup and saucer")
    # the caption appears only as the rewrite of its own degradation
    assert all(
        r["rewrite"] != "a coffee cup and saucer on a wooden table" or r["prompt"] != case["prompt"] for r in rows
    )
