"""Stage 6, the records: tile ledger, provenance, STAC item and indexes of an output."""
