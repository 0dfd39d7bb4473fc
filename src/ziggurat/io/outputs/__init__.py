"""Stage 3a, output drivers: tile directories (GeoTIFF, PNG, vectors, GeoParquet), single
files, Zarr stores, behind the `Output` seam, and their read side (`stored.open_stored`)."""
