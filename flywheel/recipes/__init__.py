"""Stage recipes (YAML) and their loader."""

from flywheel.recipes.recipe import Recipe, Rule, builtin_recipes, load_recipe

__all__ = ["Recipe", "Rule", "builtin_recipes", "load_recipe"]
