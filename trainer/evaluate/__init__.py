"""Evaluation: render a prompt set from a checkpoint, score each output with offline signals, write results."""
