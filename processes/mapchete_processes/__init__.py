"""mapchete's ready-made processes under their mapchete names and parameters.

A recipe's ``process: mapchete.processes.convert`` runs `convert` here: mapchete's
parameters and defaults, ziggurat's reading underneath. Tile-directory matching options
(``td_matching_*``, ``td_fallback_to_higher_zoom``) are accepted; ziggurat picks the zoom whose
resolution fits the tile itself.
"""
