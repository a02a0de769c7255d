"""hashidx: asymmetric deep hashing (AHCL) for remote-sensing image retrieval, on FAISS."""

__version__ = "0.1.0"
