"""The head mathematics the stream runs live (and offline evaluation reuses)."""
