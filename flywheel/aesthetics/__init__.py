"""The aesthetic head: constructed preference pairs, annotators' keep/reject, training and the head file.

Why it lives in the core: the filter (`filters/aesthetics.py`) only reads the head file, while training
(`bench/aesthetics.py` for the shipped head, `flywheel aesthetics fit` for a workspace's own) needs the
degradations, the workspace's decisions and the optimiser; both sides share the one head format of `head.py`.
"""
