"""Per-token losses and exact per-domain aggregation: pure tensor functions, testable without a model.

A domain's loss is its token-loss sum divided by its token count, accumulated across
micro-batches (never a mean of per-batch means), so the result does not depend on how a
batch is cut.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tandem.data.sft import IGNORE_INDEX  # noqa: F401  (the batch format is data's; the loss reads it)


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy per target token [B, T] (0 where ignored) and the mask of supervised tokens."""
    B, T, V = logits.shape
    loss = F.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T), reduction="none", ignore_index=IGNORE_INDEX)
    return loss.view(B, T), targets != IGNORE_INDEX


def domain_sums(loss: torch.Tensor, mask: torch.Tensor, domain: torch.Tensor, num_domains: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-domain token-loss sums and supervised-token counts, via index_add (one pass, any number of domains)."""
    row_sum = (loss * mask).sum(dim=1).double()
    row_cnt = mask.sum(dim=1).double()
    sums = torch.zeros(num_domains, dtype=torch.float64, device=loss.device).index_add_(0, domain, row_sum)
    counts = torch.zeros(num_domains, dtype=torch.float64, device=loss.device).index_add_(0, domain, row_cnt)
    return sums, counts


def domain_token_counts(targets: torch.Tensor, domain: torch.Tensor, num_domains: int) -> torch.Tensor:
    """Supervised tokens per domain in a batch (known before any forward pass)."""
    cnt = (targets != IGNORE_INDEX).sum(dim=1).double()
    return torch.zeros(num_domains, dtype=torch.float64, device=targets.device).index_add_(0, domain, cnt)


def objective_coefficients(counts: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Per-domain weight of one token in a batch's objective sum(coef[d(t)] * loss_t).

    alpha=None (resampled batch): every token weighs 1/N, the token mean of the whole batch.
    alpha given (reweighted batch): sum_i alpha_i * L_i with L_i the token mean of domain i;
    domains absent from the batch drop out and the rest are renormalised.
    """
    counts = counts.double()
    if alpha is None:
        return torch.full_like(counts, 1.0 / counts.sum().clamp(min=1.0))
    alpha = alpha.double().to(counts.device)
    present = counts > 0
    a = torch.where(present, alpha, torch.zeros_like(alpha))
    a = a / a.sum().clamp(min=1e-30)
    return torch.where(present, a / counts.clamp(min=1.0), torch.zeros_like(a))


class DomainLossMeter:
    """Accumulates per-domain loss sums and token counts across micro-batches (float64)."""

    def __init__(self, num_domains: int):
        self.sums = np.zeros(num_domains, dtype=np.float64)
        self.counts = np.zeros(num_domains, dtype=np.float64)

    def add(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        self.sums += sums.detach().cpu().numpy()
        self.counts += counts.detach().cpu().numpy()

    def losses(self) -> np.ndarray:
        """Per-domain token-mean loss; NaN for domains with no tokens."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)

    def mean(self) -> float:
        """Token mean over all domains together."""
        return float(self.sums.sum() / max(self.counts.sum(), 1))
