"""mapchete's example processes."""
