"""Retrieval parts: loading and splitting documents, the FAISS index, retrievers, the knowledge base, the RAG prompt."""
