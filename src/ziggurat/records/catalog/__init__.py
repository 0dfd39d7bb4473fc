"""Stage 7b, the catalog: what describes an output to others (STAC items and collections,
the quicklook, VRTs and vector indexes), built from the stored output."""
