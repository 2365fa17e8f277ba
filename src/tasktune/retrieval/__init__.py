"""Dense retrieval parts shared by tasks (retrieval, multiple choice's open book) and commands (`index`, `mine`):
corpus files, bi-encoder pooling and embedding, the faiss index, BM25 and hard-negative mining."""
