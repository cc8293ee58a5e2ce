"""Losses, the training loops, checkpoints, snapshots and logs."""
