"""Live state per (model, stream): lag history, the stream's data clock."""
