"""Stage 3, storage: where bytes go (local atomic writes, object stores through obstore) and how
credentials reach GDAL and obstore; no format knowledge."""
