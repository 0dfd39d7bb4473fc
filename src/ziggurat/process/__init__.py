"""Stage 4, the process: load the recipe's process module once, check its signature against the
recipe and build each call (ziggurat's rules or mapchete's, `compat/`)."""
