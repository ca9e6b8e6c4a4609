"""The bad-case commands as a user drives them (no index needed): ingest, list, show, decide, route, export."""

import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

from pipelines.cli import app
from tests.flywheel.badcases.test_store import _eval_rows
from tests.images import encode, photo_like

runner = CliRunner()


def test_badcase_commands_end_to_end(tmp_path):
    ws = str(tmp_path / "ws")
    pq.write_table(_eval_rows(2), tmp_path / "eval.parquet")
    (tmp_path / "out.png").write_bytes(encode(photo_like(40, 30), "PNG"))
    (tmp_path / "fb.jsonl").write_text(
        json.dumps(
            {
                "prompt": "two cats left of a dog, no collars",
                "image": "out.png",
                "complaint": "it ignored the dog",
                "rating": 2,
            }
        )
        + "\n"
    )
    first = runner.invoke(
        app, ["badcases", "ingest", "-w", ws, str(tmp_path / "eval.parquet"), str(tmp_path / "fb.jsonl")]
    )
    assert first.exit_code == 0, first.output
    assert "eval.parquet: 4 added" in first.output and "fb.jsonl: 1 added" in first.output
    again = runner.invoke(app, ["badcases", "ingest", "-w", ws, str(tmp_path / "eval.parquet")])
    assert "0 added, 4 already in the store" in again.output
    routed = runner.invoke(app, ["route", "-w", ws])
    assert routed.exit_code == 0 and "routed 3 case(s)" in routed.output and "no index" in routed.output
    listed = runner.invoke(app, ["badcases", "list", "-w", ws, "--track", "prompt"], env={"COLUMNS": "250"})
    assert "two cats left of a dog" in listed.output and "rule:complex_instruction_rendered_well" in listed.output
    prompt = runner.invoke(app, ["tracks", "-w", ws, "--track", "prompt"])
    assert prompt.exit_code == 0, prompt.output
    chat = tmp_path / "chat.jsonl"
    exported = runner.invoke(app, ["tracks", "export-prompt", "-w", ws, str(chat)])
    assert exported.exit_code == 0 and "chat example" in exported.output, exported.output
    lines = [json.loads(line) for line in chat.read_text().splitlines()]
    assert lines and all([m["role"] for m in x["messages"]] == ["system", "user", "assistant"] for x in lines)
    assert any("two cats left of a dog" in x["messages"][1]["content"] for x in lines)
    from flywheel.badcases import BadCaseStore

    case_id = BadCaseStore(tmp_path / "ws" / "badcases").list(track="prompt")[0]["case_id"]
    decided = runner.invoke(
        app, ["badcases", "decide", "-w", ws, case_id, "--track", "rl", "--by", "ann", "--note", "actually blurry"]
    )
    assert decided.exit_code == 0 and f"{case_id} -> rl by ann" in decided.output
    shown = runner.invoke(app, ["badcases", "show", "-w", ws, case_id])
    case = json.loads(shown.output)
    assert case["track"] == "rl" and case["decisions"][0]["note"] == "actually blurry"
    assert case["evidence"]["rule"] == "complex_instruction_rendered_well" and case["output_image"].endswith(".img")
    rerouted = runner.invoke(app, ["route", "-w", ws, "--reroute"])
    assert "1 kept their annotator decision" in rerouted.output
    out = tmp_path / "cases.parquet"
    assert runner.invoke(app, ["badcases", "export", "-w", ws, "-o", str(out)]).exit_code == 0
    assert pq.read_table(out).num_rows == 5
    rl = runner.invoke(app, ["tracks", "-w", ws, "--track", "rl"])
    assert rl.exit_code == 0 and '"pairs": 2' in rl.output


def test_bad_input_is_a_clear_error(tmp_path):
    ws = str(tmp_path / "ws")
    (tmp_path / "fb.csv").write_text("prompt,rating\n,3\nok,seven\n")
    bad = runner.invoke(app, ["badcases", "ingest", "-w", ws, str(tmp_path / "fb.csv")])
    assert bad.exit_code == 2 and "line 2" in bad.output and "line 3" in bad.output
    missing = runner.invoke(app, ["badcases", "decide", "-w", ws, "nope", "--track", "rl", "--by", "a"])
    assert missing.exit_code == 2 and "no bad case" in missing.output
    no_index = runner.invoke(app, ["tracks", "-w", ws, "--track", "pretrain"])
    assert no_index.exit_code == 2 and "flywheel index" in no_index.output
    no_router = runner.invoke(app, ["route", "-w", ws, "--mode", "blend"])
    assert no_router.exit_code == 2 and "route-fit" in no_router.output
    search = runner.invoke(app, ["search", "-w", ws, "--text", "a cat"])
    assert search.exit_code == 2 and "flywheel index" in search.output


def test_route_fit_learns_from_annotators_and_blends(tmp_path):
    from flywheel.badcases import BadCaseStore

    ws = tmp_path / "ws"
    records = []
    for i in range(8):
        records.append({"prompt": f"a blurry dog number {i}", "complaint": "so blurry and ugly", "rating": 1})
        records.append({"prompt": f"two cats left of dog {i}, no collars", "complaint": "ignored the dog", "rating": 3})
    (tmp_path / "fb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert runner.invoke(app, ["badcases", "ingest", "-w", str(ws), str(tmp_path / "fb.jsonl")]).exit_code == 0
    assert runner.invoke(app, ["route", "-w", str(ws)]).exit_code == 0
    store = BadCaseStore(ws / "badcases")
    for case in store.list():
        store.decide(case["case_id"], "rl" if "blurry" in case["prompt"] else "prompt", "ann")
    fit = runner.invoke(app, ["route-fit", "-w", str(ws)], env={"COLUMNS": "200"})
    assert fit.exit_code == 0, fit.output
    assert "cross-validated agreement 1.000" in fit.output and (ws / "badcases" / "learned_router.json").is_file()
    blend = runner.invoke(app, ["route", "-w", str(ws), "--mode", "blend", "--reroute"])
    assert blend.exit_code == 0 and "16 kept their annotator decision" in blend.output
