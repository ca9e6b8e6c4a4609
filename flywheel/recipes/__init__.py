"""Stage recipes (YAML) and their loader."""

from flywheel.recipes.recipe import MIX_SOURCES, MixSource, Recipe, Rule, builtin_recipes, load_recipe, parse_mix

__all__ = ["MIX_SOURCES", "MixSource", "Recipe", "Rule", "builtin_recipes", "load_recipe", "parse_mix"]
