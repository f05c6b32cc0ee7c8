"""offline_train."""
