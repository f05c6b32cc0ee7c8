"""vpd_stream/models."""
