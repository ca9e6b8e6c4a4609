"""The MMDiT backbone and its positional encoding (MSRoPE)."""
