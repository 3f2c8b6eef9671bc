"""Encoders for the forward index: layer pruning (L3 Prune), hard-negative mining, contrastive training
with SAM/ASAM and group DRO; the ``ff-train`` command. Heavy libraries load inside the functions."""
