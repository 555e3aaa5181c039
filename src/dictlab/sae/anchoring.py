"""Feature anchoring (seed 004, §4, Eqs. 23–25): pin the first k latents of any SAE to known directions.

The anchored objective adds to the SAE's loss

    L_anchor = ‖W_E[1:k, :] − W̃_pᵀ‖²_F + ‖W_D[:, 1:k] − W̃_r‖²_F,        L = L_SDL + λ_anchor · L_anchor

where the columns of W̃_p (n_p × k) and W̃_r (n_r × k) are the anchors. In dictlab's row layout the first k
encoder rows ``W_E[1:k, :]`` are ``W_enc[:, :k].T`` (k, d_in) and the first k decoder columns
``W_D[:, 1:k]`` are ``W_dec[:k]`` (k, d_out), so ``Anchors.encoder`` and ``Anchors.decoder`` are (k, width)
with one anchor per row.

Anchors come from

* the ground truth of a benchmark: k true features chosen at random (``ground_truth_anchors``); the encoder
  side reads the observations (the rows of the data's dictionary, unit norm), the decoder side writes what
  the model reconstructs (the same rows for an SAE or crosscoder, the target dictionary's for a transcoder);
* labelled data: the normalised class means ``w̃^(c) = x̄^(c) / ‖x̄^(c)‖`` (Eq. 23, ``class_mean_anchors``).
"""

from __future__ import annotations

import torch

from dictlab.models.base import Anchors


def unit_rows(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` (k, w) with every row scaled to unit ℓ2 norm (a zero row stays zero)."""
    return rows / torch.linalg.vector_norm(rows, dim=1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)


def ground_truth_anchors(
    dictionary: torch.Tensor,
    k: int,
    generator: torch.Generator,
    *,
    target_dictionary: torch.Tensor | None = None,
    encoder: bool = True,
) -> tuple[Anchors, torch.Tensor]:
    """k anchors from k true features drawn without replacement with ``generator`` (CPU); returns (anchors,
    the chosen features (k,) int64).

    dictionary : (n, m) true features as rows (the data's ``dictionary``, which the encoder reads).
    target_dictionary : (n, r) what the decoder writes when it is not the observations (a transcoder's target).
    encoder : whether the model has an encoder to anchor (an MP-SAE has not).
    """
    n = dictionary.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"anchor_features={k} must be between 1 and the data's {n} true features")
    chosen = torch.randperm(n, generator=generator)[:k].to(dictionary.device)
    written = dictionary if target_dictionary is None else target_dictionary
    anchors = Anchors(
        encoder=unit_rows(dictionary[chosen]) if encoder else None,
        decoder=unit_rows(written[chosen]),
    )
    return anchors, chosen


def class_mean_anchors(
    y: torch.Tensor, labels: torch.Tensor, *, target: torch.Tensor | None = None, encoder: bool = True
) -> Anchors:
    """Eq. 23: one anchor per class, the normalised mean of that class's observations, classes in sorted order.

    y : (N, m) observations; labels : (N,) class of each row (integers or bool); target : (N, r) the targets a
    transcoder decodes (their class means anchor its decoder; None: the observations' anchor both sides).
    """
    if labels.ndim != 1 or labels.shape[0] != y.shape[0]:
        raise ValueError(f"labels must be ({y.shape[0]},) for {y.shape[0]} observations, got {tuple(labels.shape)}")
    classes, index = torch.unique(labels, return_inverse=True)

    def means(x: torch.Tensor) -> torch.Tensor:
        sums = torch.zeros(len(classes), x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, index, x)
        counts = torch.bincount(index, minlength=len(classes)).to(x.dtype)
        return unit_rows(sums / counts[:, None])

    observed = means(y)
    return Anchors(encoder=observed if encoder else None, decoder=observed if target is None else means(target))


def anchor_loss(w_enc: torch.Tensor | None, w_dec: torch.Tensor, anchors: Anchors) -> torch.Tensor:
    """L_anchor of Eq. 25 (a differentiable scalar): ‖W_enc[:, :k].T − anchors.encoder‖²_F (when both exist)
    + ‖W_dec[:k] − anchors.decoder‖²_F (when given).

    w_enc : (d_in, d_sae) or None; w_dec : (d_sae, d_out).
    """
    k = anchors.k
    if k > w_dec.shape[0]:
        raise ValueError(f"{k} anchors need at least {k} latents; the model has {w_dec.shape[0]}")
    loss = w_dec.new_zeros(())
    if anchors.encoder is not None and w_enc is not None:
        if anchors.encoder.shape[1] != w_enc.shape[0]:
            raise ValueError(f"anchors.encoder must be ({k}, {w_enc.shape[0]}), got {tuple(anchors.encoder.shape)}")
        loss = loss + (w_enc[:, :k].T - anchors.encoder.to(w_enc)).pow(2).sum()
    if anchors.decoder is not None:
        if anchors.decoder.shape[1] != w_dec.shape[1]:
            raise ValueError(f"anchors.decoder must be ({k}, {w_dec.shape[1]}), got {tuple(anchors.decoder.shape)}")
        loss = loss + (w_dec[:k] - anchors.decoder.to(w_dec)).pow(2).sum()
    return loss
