"""Stage 1, the core: values every later stage shares (errors, bounds, grids, geometry, task
values, storage locations, tile layouts, time steps, the format table) and nothing that does work."""
