"""Recipes mean what they say: checked against the pool, `keep:` is one expression, no file access."""

from pathlib import Path

import pytest

from filters.registry import column_owners
from flywheel.config import ConfigError
from flywheel.recipes import load_recipe
from flywheel.select import RecipeError, SelectionExistsError, select
from flywheel.select.validate import keep_columns
from flywheel.workspace import Workspace
from tests.flywheel.test_select import _pool


def _recipe(tmp_path: Path, body: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text("name: r\n" + body)
    return str(path)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    return ws


def test_rule_on_a_column_that_exists_nowhere_is_an_error(tmp_path, ws):
    rec = load_recipe(_recipe(tmp_path, "rules:\n  - name: typo\n    column: nsfw_scor\n    max: 0.5\n"))
    with pytest.raises(RecipeError, match=r"typo.*nsfw_scor"):
        select(ws, rec, known_columns=column_owners())
    assert not (ws.root / "curated" / "r").exists()


def test_rule_whose_filter_was_not_run_is_reported_not_applied(tmp_path, ws):
    rec = load_recipe(_recipe(tmp_path, "rules:\n  - name: ent\n    column: entropy_bits\n    min: 0.2\n"))
    funnel = select(ws, rec, known_columns=column_owners()).funnel
    assert funnel.not_applied[0]["rule"] == "ent" and "entropy" in funnel.not_applied[0]["why"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("tasks: T2I\nrules: []\n", "tasks must be a list"),
        ("tasks: [T2X]\nrules: []\n", "tasks"),
        ("rules:\n  - name: n\n    column: nsfw_score\n    max: abc\n", "max must be a number"),
        ("rules:\n  - name: n\n    column: nsfw_score\n    is_null: maybe\n", "is_null must be true or false"),
        ("rules:\n  - name: n\n    column: nsfw_score\n    in: 0.5\n", "in must be a list"),
        ("rules:\n  - name: d\n    column: dedup_phash\n    dedup: fuzzy\n", "dedup must be exact, perceptual or"),
        ("stage: one\nrules: []\n", "stage must be a whole number"),
    ],
)
def test_wrong_types_are_one_line_errors(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_recipe(_recipe(tmp_path, body))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("rules:\n  - name: n\n    column: caption_issue\n    min: 3\n", "numeric column"),
        ("rules:\n  - name: n\n    column: nsfw_score\n    in: [low]\n", "does not match"),
        ("rules:\n  - name: d\n    column: dedup_sha256\n    dedup: perceptual\n", "integer hash column"),
    ],
)
def test_rule_values_are_checked_against_column_types(tmp_path, ws, body, message):
    with pytest.raises(RecipeError, match=message):
        select(ws, load_recipe(_recipe(tmp_path, body)), known_columns=column_owners())


def test_overridden_value_of_the_wrong_type_is_a_config_error():
    with pytest.raises(ConfigError, match="max must be a number"):
        load_recipe("stage1_256p").with_overrides({"nsfw.max": "abc"})


@pytest.mark.parametrize(
    "keep",
    [
        "TRUE); COPY (SELECT 1) TO '/tmp/x.csv'; SELECT (1",
        "(SELECT count(*) FROM read_csv('/etc/passwd')) > 0",
        "nsfw_score < 0.5 -- and the rest",
        "nsfw_score < 0.5) OR (1=1",
        "uri IN (SELECT uri FROM s)",
        "",
    ],
)
def test_keep_must_be_a_single_expression(keep):
    with pytest.raises(RecipeError):
        keep_columns(keep, "rule 'k'")


def test_keep_expression_columns_are_found_and_checked(tmp_path, ws):
    assert keep_columns("nsfw_score < 0.5 AND lower(uri) LIKE '%;--%'", "r") == {"nsfw_score", "uri"}
    rec = load_recipe(_recipe(tmp_path, 'rules:\n  - name: k\n    keep: "nsfw_score < 0.5 AND file_bytes > 10"\n'))
    funnel = select(ws, rec, known_columns=column_owners()).funnel
    assert funnel.kept == 7  # the two rows with nsfw_score >= 0.5 are out, nulls (broken) fail too
    bad = load_recipe(_recipe(tmp_path, 'rules:\n  - name: k\n    keep: "nosuch_col > 1"\n'))
    with pytest.raises(RecipeError, match="nosuch_col"):
        select(ws, bad, known_columns=column_owners())


def test_selection_runs_without_file_access(tmp_path, ws, monkeypatch):
    """Even an expression that passed validation cannot touch files: DuckDB's access is off and locked."""
    import flywheel.select.engine as engine

    target = tmp_path / "leak.csv"
    monkeypatch.setattr(engine, "check_recipe", _unchecked(engine.check_recipe))
    sneaky = f"(SELECT count(*) FROM read_csv('{ws.pool_dir}/_sources.json')) >= 0"
    rec = load_recipe(_recipe(tmp_path, f'rules:\n  - name: k\n    keep: "{sneaky}"\n'))
    with pytest.raises(RecipeError, match="cannot be evaluated"):
        select(ws, rec, known_columns=column_owners())
    assert not target.exists()


def _unchecked(real):
    """check_recipe without the keep-expression parser, to prove the second line of defence."""
    from flywheel.select.validate import CheckedRecipe

    def check(recipe, schema, known=None):
        out = CheckedRecipe(applied=list(recipe.rules))
        out.columns = {"uri"}
        return out

    return check


def test_set_overrides_write_under_their_own_name_and_never_overwrite(ws):
    base = select(ws, load_recipe("stage1_256p"), known_columns=column_owners())
    loose = load_recipe("stage1_256p").with_overrides({"min_side.min": "50"})
    assert loose.name.startswith("stage1_256p+") and loose.overrides == {"min_side.min": "50"}
    exp = select(ws, loose, known_columns=column_owners())
    assert exp.out_dir != base.out_dir and base.out_dir.is_dir()
    assert (base.meta_dir / "recipe.json").read_text() != (exp.meta_dir / "recipe.json").read_text()
    assert '"min_side.min": "50"' in (exp.meta_dir / "recipe.json").read_text()
    with pytest.raises(SelectionExistsError, match="--replace"):
        select(ws, loose, known_columns=column_owners(), name="stage1_256p")
    select(ws, loose, known_columns=column_owners(), name="stage1_256p", replace=True)
    select(ws, load_recipe("stage1_256p"), known_columns=column_owners(), name="mine")
    select(ws, load_recipe("stage1_256p"), known_columns=column_owners(), name="mine")  # same recipe: refresh
