"""Spotify: SQL tables copied window by window into bronze, merged into silver, an SCD2 star schema."""
