"""Formula 1: file drops to processed (silver) and presentation (gold) tables with Delta MERGE."""
