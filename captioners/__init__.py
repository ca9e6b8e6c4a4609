"""captioners: caption types (types.py), OCR / transformers / OpenAI-compatible backends, checks, fusion and
synthetic text renders (synth/); reads curated shards and writes captioned/<recipe>/ (see docs/captioners.md)."""
