"""What training writes and the server reads: the model card, feature (lag) assembly, the registry,
atomic writes, shared types and the error root. Training and the server both import it; it
imports neither.
"""
