"""Recipe models and loading."""

from optcli.recipe.loader import (
    all_errors,
    apply_override,
    load_recipe,
    parse_recipe,
    recipe_schema,
)
from optcli.recipe.models import SCHEMA_VERSION, Recipe

__all__ = [
    "SCHEMA_VERSION",
    "Recipe",
    "all_errors",
    "apply_override",
    "load_recipe",
    "parse_recipe",
    "recipe_schema",
]
