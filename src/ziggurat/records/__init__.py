"""Stage 7, the records: the tile ledger, provenance, the run lock and the remote copy of them
(state), and the catalog describing an output (`catalog/`)."""
