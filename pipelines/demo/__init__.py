"""The `flywheel demo` walk-through: score, select, caption and turn the loop on the built-in corpus."""
