"""Model FLOPs of one training sample, for throughput and MFU reports (bench/train_throughput.py).

Formula (matmul FLOPs only; norms, activations, RoPE and the frozen condition encoder are not counted, as is
usual for MFU):

    forward = 2 * N_img * P_img + 2 * N_txt * P_txt + depth * 4 * L^2 * d
    training = 3 * forward          (backward = 2 x forward)

where N_img counts target (+ source, for edits) image tokens, N_txt text tokens, L = N_img + N_txt, d the
hidden width, P_img / P_txt the weights each image / text token multiplies through (its stream's qkv, output
and SwiGLU matrices in every block, plus the input and output projections). The per-sample modulation and
timestep MLPs are negligible (once per sample, not per token) and left out.
"""

from __future__ import annotations

from trainer.model.mmdit import MMDiT

H100_BF16_DENSE_TFLOPS = 989.0


def _stream_params(model: MMDiT, stream: str) -> int:
    total = 0
    for block in model.blocks:
        s = getattr(block, stream)
        total += sum(m.weight.numel() for m in (s.qkv, s.out, s.mlp.w1, s.mlp.w2, s.mlp.w3))
    return total


def training_flops_per_sample(model: MMDiT, n_img: int, n_txt: int) -> float:
    d = model.cfg.hidden
    p_img = _stream_params(model, "img") + model.img_in.weight.numel() + model.proj_out.weight.numel()
    p_txt = _stream_params(model, "txt") + model.txt_in.weight.numel()
    seq = n_img + n_txt
    forward = 2 * n_img * p_img + 2 * n_txt * p_txt + model.cfg.depth * 4 * seq * seq * d
    return 3.0 * forward
