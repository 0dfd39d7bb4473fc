"""Stage 9, audit: questions asked of an output after (or instead of) a run: the plan report,
`verify`, `reproduce`, `status`, and the same on a bucket."""
