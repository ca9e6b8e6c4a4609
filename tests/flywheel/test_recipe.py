import pytest

from flywheel.config import ConfigError
from flywheel.recipes import builtin_recipes, load_recipe


def test_stage1_recipe_has_the_eight_filter_families_in_order():
    recipe = load_recipe("stage1_256p")
    assert "stage1_256p" in builtin_recipes()
    cols = [r.column for r in recipe.rules]
    for expected in (
        "broken_reason",
        "resolution_min_side",
        "nsfw_score",
        "rotation_net_upright_prob",
        "entropy_bits",
        "clip_score",
        "caption_tokens",
        "dedup_sha256",
        "dedup_phash",
    ):
        assert expected in cols
    assert recipe.resolution == 256 and recipe.tasks == ["T2I"]


def test_overrides_change_thresholds_and_reject_unknowns():
    recipe = load_recipe("stage1_256p").with_overrides({"nsfw.max": "0.3", "near_dup.max_hamming": "2"})
    assert recipe.rule("nsfw").max == 0.3 and recipe.rule("near_dup").max_hamming == 2
    with pytest.raises(ConfigError, match="no rule"):
        recipe.with_overrides({"nope.max": "1"})
    with pytest.raises(ConfigError, match="unknown rule parameter"):
        recipe.with_overrides({"nsfw.maxx": "1"})


def test_bad_recipe_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nrules:\n  - name: r1\n    column: x\n    minimum: 3\n")
    with pytest.raises(ConfigError, match="unknown config key"):
        load_recipe(str(bad))
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: e\nrules:\n  - name: r1\n    column: x\n")
    with pytest.raises(ConfigError, match="no condition"):
        load_recipe(str(empty))
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_recipe("no_such_stage")


def test_invalid_yaml_is_a_config_error(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nrules: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(str(broken))
