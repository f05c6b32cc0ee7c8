"""Corpus preparation: the stream's own plugins over video files, into a per-video store."""
from .store import CorpusStore, VideoStore, open_store

__all__ = ["CorpusStore", "VideoStore", "open_store"]
