"""Netflix titles: CSV files from HTTP, through bronze and silver, to gold tables with expectations."""
