"""Building blocks shared by every pipeline's Spark jobs."""
