"""Stage 2, the recipe: YAML with line numbers, validated into frozen, picklable values.

Everything a run needs to know about the user's intent is checked here, before any file is
touched: keys, types, zooms, the output section, STAC settings, vector schemas and areas.
"""

from ziggurat.recipe.model import FrozenDict, InputConfig, OutputConfig, Recipe, load_recipe, parse_zoom_levels

__all__ = ["FrozenDict", "InputConfig", "OutputConfig", "Recipe", "load_recipe", "parse_zoom_levels"]
