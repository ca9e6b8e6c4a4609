from pathlib import Path

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


def test_every_name_or_yaml_option_follows_one_rule(tmp_path) -> None:
    """Recipes, trainer stages and prompt sets resolve names the same way (flywheel.config.named_yaml)."""
    from flywheel.config import named_yaml
    from trainer.config import load_stage
    from trainer.evaluate.prompts import load_prompt_set

    for loader, kind in ((load_recipe, "recipe"), (load_stage, "stage"), (load_prompt_set, "prompt set")):
        with pytest.raises(ConfigError, match=f"unknown {kind} 'nope'; built-in: .* \\(or pass a YAML path\\)"):
            loader("nope")
        with pytest.raises(ConfigError, match="config file not found"):
            loader(str(tmp_path / "missing.yaml"))
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    assert named_yaml("mine", tmp_path, "recipe") == tmp_path / "mine.yaml"  # a name finds the built-in file
    assert named_yaml("x/other.yml", tmp_path, "recipe") == Path("x/other.yml")  # a path is taken as given
