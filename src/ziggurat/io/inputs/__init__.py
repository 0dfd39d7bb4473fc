"""Stage 3b, input drivers: rasters, mosaics, tile directories and Zarr stores read back,
vectors and STAC items, each behind the `Input` seam (`ziggurat.io.protocols`)."""
