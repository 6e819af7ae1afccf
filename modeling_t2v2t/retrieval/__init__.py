"""Retrieval on top of the models: metrics (`metrics`), two-stage evaluation (`evaluation`), embedding indexes
(`index`: exact torch and faiss) and `VideoRetriever` (`retriever`: index videos, search by text, rerank); per-query
ranks of an evaluation (`query_ranks`) and the paired bootstrap that compares methods with them
(`paired_bootstrap`)."""
