"""Ready-made processes; a recipe names one by module (``process: hillshade``)."""
