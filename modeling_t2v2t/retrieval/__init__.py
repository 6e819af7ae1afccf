"""Retrieval on top of the models: metrics (`metrics`), two-stage evaluation (`evaluation`), embedding indexes
(`index`: exact torch and faiss) and `VideoRetriever` (`retriever`: index videos, search by text, rerank)."""
