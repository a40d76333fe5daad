"""The uCLIP training objective over cached embeddings (paper Sec. "Proposed Method").

For each English query i we have e_i^C (CLIP text tower) and e_i^M (multilingual tower). The
soft-retrieved v_i^C (Eq. 1, image bank V) and m_i^M (Eq. 2, text bank M) depend only on frozen
encoders and fixed banks, so they are computed once for all queries (:func:`retrieve_pseudo_pairs`)
instead of once per batch and epoch as in the reference code — the same values, far less work.
Perturbation (Eq. 3–4), the heads and the losses (Eq. 5–7) run every step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uclip.errors import UclipError
from uclip.method.losses import uclip_loss
from uclip.method.model import UCLIPHeads
from uclip.method.perturb import RowGather, perturb_local_rows
from uclip.method.retrieval import soft_retrieve
from uclip.validation import Allowed, above, at_least, check_fields, check_mapping, one_of

# Ranges beyond the field types (a field without an entry is type-checked only).
METHOD_ALLOWED: dict[str, Allowed] = {
    "tau_retrieval": above(0),
    "noise_variance": at_least(0),
    "tau": above(0),
    "lam": at_least(0),
    "retrieval_chunk_size": at_least(1),
    "retrieval_top_k": at_least(1),
    "init": one_of("random", "ridge"),
    "ridge_lambda": at_least(0),
}


@dataclass
class UCLIPHyperParams:
    """Method hyper-parameters; defaults are the paper's reference values."""

    tau_retrieval: float = 0.01  # Eq. 1–2 softmax temperature
    noise_variance: float = 0.004  # sigma^2 of Eq. 3–4
    tau: float = 0.01  # InfoNCE temperature, Eq. 5
    lam: float = 0.1  # weight of L_intra
    perturb: bool = True
    use_text: bool = True
    use_pseudo: bool = True
    use_intra: bool = True
    retrieval_chunk_size: int = 65536
    retrieval_top_k: int | None = None
    # Beyond the paper (chosen on dev data): "ridge" starts linear/residual heads at the
    # closed-form ridge map (uclip.method.ridge); ridge_lambda None picks lambda on dev.
    init: str = "random"
    ridge_lambda: float | None = None
    # Where the paper text and the authors' code differ: the code L2-normalises the retrieved
    # v^C, m^M before Eq. 3-4 and uses the unsquared distance in L_intra; the text does neither.
    renormalize_retrieved: bool = False
    intra_squared: bool = True

    def __post_init__(self) -> None:
        check_fields(self, METHOD_ALLOWED, "method")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UCLIPHyperParams:
        return cls(**check_mapping(data, cls, "method", METHOD_ALLOWED))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retrieve_pseudo_pairs(
    e_c: torch.Tensor,
    e_m: torch.Tensor,
    image_bank: Any,
    text_bank: Any,
    hp: UCLIPHyperParams,
    query_chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """v^C = soft_retrieve(e^C, V) (Eq. 1) and m^M = soft_retrieve(e^M, M) (Eq. 2) for all queries.

    Shapes: e_c (N, d_C), e_m (N, d_M) -> v_c (N, d_C), m_m (N, d_M).
    """
    if e_c.shape[0] != e_m.shape[0]:
        raise UclipError(
            f"{e_c.shape[0]} anchor embeddings but {e_m.shape[0]} multilingual embeddings: "
            "both must embed the same English captions"
        )
    kwargs = {
        "chunk_size": hp.retrieval_chunk_size,
        "top_k": hp.retrieval_top_k,
        "query_chunk_size": query_chunk_size,  # bounds memory; each bank is still read once
    }
    with torch.no_grad():
        v_c = soft_retrieve(e_c, image_bank, hp.tau_retrieval, **kwargs)
        m_m = soft_retrieve(e_m, text_bank, hp.tau_retrieval, **kwargs)
    if hp.renormalize_retrieved:
        v_c, m_m = F.normalize(v_c, dim=-1), F.normalize(m_m, dim=-1)
    return v_c, m_m


class UCLIPObjective:
    """Trainer objective: perturb (Eq. 3–4) → heads → L_text + L_pseudo + λ·L_intra (Eq. 5–7).

    ``gather`` (data-parallel runs, see ``uclip.train.distributed``): each rank perturbs its rows
    with the noise one process would draw for them, projects them, and gathers the projections of
    all ranks (keeping gradients) so Eq. 5–7 are evaluated on the global batch. ``None``: one
    process.
    """

    def __init__(
        self,
        heads: UCLIPHeads,
        e_c: torch.Tensor,
        e_m: torch.Tensor,
        v_c: torch.Tensor,
        m_m: torch.Tensor,
        hp: UCLIPHyperParams,
        gather: RowGather | None = None,
    ) -> None:
        n = e_c.shape[0]
        if not (e_m.shape[0] == v_c.shape[0] == m_m.shape[0] == n):
            raise UclipError("e_c, e_m, v_c and m_m must have one row per training caption")
        if e_c.shape[1] != heads.f_c.in_dim or v_c.shape[1] != heads.f_c.in_dim:
            raise UclipError(
                f"anchor/image embeddings are {e_c.shape[1]}-d but f_C expects {heads.f_c.in_dim}-d"
            )
        if e_m.shape[1] != heads.f_m.in_dim or m_m.shape[1] != heads.f_m.in_dim:
            raise UclipError(
                f"multilingual embeddings are {e_m.shape[1]}-d but f_M expects {heads.f_m.in_dim}-d"
            )
        self.model: nn.Module = heads
        self.e_c, self.e_m, self.v_c, self.m_m = (t.float() for t in (e_c, e_m, v_c, m_m))
        self.hp = hp
        self.num_examples = n
        self.gather = gather

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def on_step_begin(self, step: int, steps_per_epoch: int) -> None:
        return None

    def loss(
        self, indices: torch.Tensor, step: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        device = next(self.model.parameters()).device
        batch = [t[indices] for t in (self.e_c, self.e_m, self.v_c, self.m_m)]
        # With perturbation off, Norm() of Eq. 3–4 still applies (retrieved vectors are not unit).
        variance = self.hp.noise_variance if self.hp.perturb else 0.0
        batch = [perturb_local_rows(t, variance, generator, self.gather) for t in batch]
        projected = self.model(*(t.to(device) for t in batch))
        if self.gather is not None:
            projected = tuple(self.gather(t) for t in projected)
        e_c, e_m, v_c, m_m = projected
        return uclip_loss(
            e_c,
            e_m,
            v_c,
            m_m,
            tau=self.hp.tau,
            lam=self.hp.lam,
            use_text=self.hp.use_text,
            use_pseudo=self.hp.use_pseudo,
            use_intra=self.hp.use_intra,
            intra_squared=self.hp.intra_squared,
        )
