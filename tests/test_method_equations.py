"""uCLIP Eq. 1–7 (method/retrieval, perturb, heads, losses) against brute-force references."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from uclip.errors import UclipError
from uclip.method.heads import ProjectionHead
from uclip.method.losses import (
    info_nce,
    inter_alignment_loss,
    intra_alignment_loss,
    pseudo_alignment_loss,
    symmetric_info_nce,
    text_alignment_loss,
    uclip_loss,
)
from uclip.method.perturb import perturb
from uclip.method.retrieval import soft_retrieve, soft_retrieve_dense

torch.set_num_threads(1)


def unit(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=gen, dtype=dtype), dim=-1)


class ListBank:
    """A stand-in for features.banks.MemoryBank: only chunks() and __len__."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows
        self.calls: list[int] = []

    def chunks(self, chunk_size: int):
        self.calls.append(chunk_size)
        for start in range(0, len(self.rows), chunk_size):
            yield self.rows[start : start + chunk_size].float()

    def __len__(self) -> int:
        return len(self.rows)


# ---------------------------------------------------------------- Eq. 1–2: soft retrieval


def brute_force_retrieve(queries: torch.Tensor, bank: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 1 written out with Python loops and math.exp (fine for moderate 1/tau)."""
    out = torch.zeros(queries.shape, dtype=torch.float64)
    for i, q in enumerate(queries.tolist()):
        sims = [sum(a * b for a, b in zip(q, row, strict=True)) for row in bank.tolist()]
        weights = [math.exp(s / tau) for s in sims]
        total = sum(weights)
        for w, row in zip(weights, bank.tolist(), strict=True):
            out[i] += torch.tensor(row, dtype=torch.float64) * (w / total)
    return out


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 23, 1000])
@pytest.mark.parametrize("query_chunk_size", [None, 2])
def test_soft_retrieve_matches_brute_force(chunk_size: int, query_chunk_size: int | None) -> None:
    queries, bank = unit(5, 6, seed=1), unit(23, 6, seed=2)
    expected = brute_force_retrieve(queries, bank, tau=0.1)
    got = soft_retrieve(
        queries, bank, 0.1, chunk_size=chunk_size, query_chunk_size=query_chunk_size
    )
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_soft_retrieve_streams_a_chunked_bank() -> None:
    queries, rows = unit(4, 8, seed=3), unit(30, 8, seed=4)
    bank = ListBank(rows)
    got = soft_retrieve(queries.float(), bank, 0.1, chunk_size=7)
    assert bank.calls == [7]
    assert got.dtype == torch.float32
    expected = brute_force_retrieve(queries, rows, tau=0.1)
    torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=0)


def test_soft_retrieve_reads_a_chunked_bank_once_with_query_blocks() -> None:
    queries, rows = unit(9, 8, seed=5), unit(20, 8, seed=6)
    bank = ListBank(rows)
    got = soft_retrieve(queries.float(), bank, 0.1, chunk_size=6, query_chunk_size=4)
    assert bank.calls == [6]
    torch.testing.assert_close(
        got.double(), brute_force_retrieve(queries, rows, 0.1), atol=1e-6, rtol=0
    )


def test_soft_retrieve_extreme_tau_is_finite_and_exact() -> None:
    # 1/tau = 1000: a naive exp(sim/tau) overflows float64 (exp(1000)); the running
    # log-sum-exp must not.
    queries, bank = unit(6, 8, seed=7), unit(50, 8, seed=8)
    got = soft_retrieve(queries, bank, 0.001, chunk_size=7)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, soft_retrieve_dense(queries, bank, 0.001), atol=1e-12, rtol=0)
    with pytest.raises(OverflowError):
        math.exp(1.0 / 0.001)


def test_soft_retrieve_tiny_tau_picks_the_nearest_row() -> None:
    queries, bank = unit(6, 8, seed=9), unit(40, 8, seed=10)
    nearest = bank[(queries @ bank.T).argmax(dim=1)]
    torch.testing.assert_close(soft_retrieve(queries, bank, 1e-6, chunk_size=9), nearest)


def test_soft_retrieve_top_k_equal_to_bank_size_is_exact() -> None:
    queries, bank = unit(5, 8, seed=11), unit(29, 8, seed=12)
    exact = soft_retrieve(queries, bank, 0.05)
    for k in (29, 100):
        got = soft_retrieve(queries, bank, 0.05, chunk_size=6, top_k=k)
        torch.testing.assert_close(got, exact, atol=1e-12, rtol=0)
        got = soft_retrieve(queries, ListBank(bank), 0.05, chunk_size=6, top_k=k)
        torch.testing.assert_close(got.double(), exact, atol=1e-6, rtol=0)


@pytest.mark.parametrize("as_list_bank", [False, True])
def test_soft_retrieve_top_k_matches_brute_force_on_the_k_nearest(as_list_bank: bool) -> None:
    queries, rows = unit(5, 8, seed=13), unit(31, 8, seed=14)
    k = 4
    expected = torch.stack(
        [
            brute_force_retrieve(q[None], rows[(rows @ q).argsort(descending=True)[:k]], 0.1)[0]
            for q in queries
        ]
    )
    bank = ListBank(rows) if as_list_bank else rows
    got = soft_retrieve(queries, bank, 0.1, chunk_size=5, top_k=k, query_chunk_size=3)
    torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=0)


def test_soft_retrieve_top_1_returns_the_nearest_row() -> None:
    queries, bank = unit(7, 8, seed=15), unit(33, 8, seed=16)
    nearest = bank[(queries @ bank.T).argmax(dim=1)]
    for chunk_size in (1, 5, 33):
        got = soft_retrieve(queries, bank, 0.5, chunk_size=chunk_size, top_k=1)
        torch.testing.assert_close(got, nearest, atol=0, rtol=0)


def test_soft_retrieve_upcasts_a_float16_bank() -> None:
    queries, bank = unit(4, 16, seed=17, dtype=torch.float32), unit(50, 16, seed=18).half()
    got = soft_retrieve(queries, bank, 0.01, chunk_size=8)
    assert got.dtype == torch.float32
    expected = soft_retrieve_dense(queries.double(), bank.double(), 0.01)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=0)
    got_k = soft_retrieve(queries, bank, 0.01, chunk_size=8, top_k=50)
    torch.testing.assert_close(got_k.double(), expected, atol=1e-5, rtol=0)


def test_soft_retrieve_dense_is_the_brute_force_formula() -> None:
    queries, bank = unit(3, 5, seed=19), unit(11, 5, seed=20)
    torch.testing.assert_close(
        soft_retrieve_dense(queries, bank, 0.2), brute_force_retrieve(queries, bank, 0.2)
    )


def test_soft_retrieve_passes_gradients_to_queries() -> None:
    queries, bank = unit(4, 6, seed=21), unit(17, 6, seed=22)
    streamed = queries.clone().requires_grad_()
    soft_retrieve(streamed, bank, 0.1, chunk_size=5).pow(2).sum().backward()
    dense = queries.clone().requires_grad_()
    soft_retrieve_dense(dense, bank, 0.1).pow(2).sum().backward()
    torch.testing.assert_close(streamed.grad, dense.grad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queries": unit(2, 5)}, "query dim 5 does not match bank dim 4"),
        ({"bank": torch.zeros(0, 4)}, "bank is empty"),
        ({"bank": ListBank(torch.zeros(0, 4))}, "bank is empty"),
        ({"bank": ListBank(unit(6, 3))}, "query dim 4 does not match bank dim 3"),
        ({"bank": unit(6)}, "bank must be 2-D"),
        ({"bank": [[1.0, 0.0, 0.0, 0.0]]}, "bank must be an (N, d) tensor"),
        ({"queries": unit(4)}, "queries must be a 2-D"),
        ({"tau": 0.0}, "tau must be a finite number > 0"),
        ({"tau": -1.0}, "tau must be a finite number > 0"),
        ({"tau": float("nan")}, "tau must be a finite number > 0"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"query_chunk_size": 0}, "query_chunk_size must be an integer >= 1"),
    ],
)
def test_soft_retrieve_rejects_bad_input(kwargs: dict, message: str) -> None:
    args = {"queries": unit(2, 4), "bank": unit(6, 4), "tau": 0.1} | kwargs
    queries, bank, tau = args.pop("queries"), args.pop("bank"), args.pop("tau")
    with pytest.raises(UclipError, match=re.escape(message)):
        soft_retrieve(queries, bank, tau, **args)


# ---------------------------------------------------------------- Eq. 3–4: perturbation


def test_perturb_without_noise_only_normalises() -> None:
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = x / x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(perturb(x, 0.0), expected)


def test_perturb_output_is_unit_norm_and_deterministic() -> None:
    x = unit(16, 32, dtype=torch.float32)
    a = perturb(x, 0.004, torch.Generator().manual_seed(3))
    b = perturb(x, 0.004, torch.Generator().manual_seed(3))
    c = perturb(x, 0.004, torch.Generator().manual_seed(4))
    torch.testing.assert_close(a.norm(dim=1), torch.ones(16))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_perturb_noise_has_the_requested_variance() -> None:
    # With x = C * e_1 and C large, Norm(x + eps) = (C + eps_1, eps_2, ...) / r, so
    # C * out_j / out_1 = eps_j * C / (C + eps_1) recovers eps_j up to a relative 1e-4:
    # a black-box view of the noise that Norm() would otherwise hide.
    variance, n, d, big = 0.004, 20_000, 11, 1e3
    x = torch.zeros(n, d, dtype=torch.float64)
    x[:, 0] = big
    out = perturb(x, variance, torch.Generator().manual_seed(12))
    eps = (big * out[:, 1:] / out[:, :1]).flatten()
    samples = eps.numel()
    # The sample variance of N(0, s2) has standard error s2 * sqrt(2 / (n - 1)): allow 5 of them.
    assert abs(eps.var().item() - variance) < 5 * variance * math.sqrt(2 / (samples - 1))
    assert abs(eps.mean().item()) < 5 * math.sqrt(variance / samples)
    # sigma^2 (not sigma) is the parameter: a std of 0.004 would be 16x too small a variance.
    assert eps.std().item() == pytest.approx(math.sqrt(variance), rel=0.02)


@pytest.mark.parametrize(
    ("variance", "message"),
    [(-0.1, "must be >= 0"), (float("inf"), "finite number"), (float("nan"), "finite number")],
)
def test_perturb_rejects_bad_variance(variance: float, message: str) -> None:
    with pytest.raises(UclipError, match=message):
        perturb(unit(2, 3), variance)


def test_perturb_rejects_non_float_input() -> None:
    with pytest.raises(UclipError, match="floating-point tensor"):
        perturb(torch.ones(2, 3, dtype=torch.long), 0.004)


# ---------------------------------------------------------------- projection heads


@pytest.mark.parametrize(("in_dim", "count"), [(384, 690_944), (512, 1_052_160), (768, 1_971_200)])
def test_head_parameter_counts(in_dim: int, count: int) -> None:
    head = ProjectionHead(in_dim)
    assert sum(p.numel() for p in head.parameters()) == count


def test_paper_head_pairs_total_about_1_7m() -> None:
    def total(*dims: int) -> int:
        return sum(p.numel() for d in dims for p in ProjectionHead(d).parameters())

    assert total(384, 512) == 1_743_104
    assert total(768, 512) == 3_023_360


def test_head_architecture_and_config_round_trip() -> None:
    head = ProjectionHead(6, out_dim=4)
    kinds = [type(m) for m in head.net]
    assert kinds == [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU, torch.nn.Linear]
    assert head.config() == {"in_dim": 6, "out_dim": 4, "hidden_dim": 12, "kind": "mlp"}
    assert (head.in_dim, head.out_dim) == (6, 4)
    rebuilt = ProjectionHead(**head.config())
    rebuilt.load_state_dict(head.state_dict())
    x = unit(5, 6, dtype=torch.float32)
    head.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), head(x))


def test_head_output_is_unit_norm_and_uses_batch_statistics_in_train_mode() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(8, out_dim=5, hidden_dim=10)
    x = unit(12, 8, dtype=torch.float32)
    out = head.train()(x)
    assert out.shape == (12, 5)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(12))
    # Train-mode BN normalises with the batch's own statistics: reference by hand.
    lin1, bn, _, lin2 = head.net
    h = lin1(x)
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
    expected = F.normalize(lin2(torch.relu(h)), dim=1)
    torch.testing.assert_close(out, expected)
    assert bn.num_batches_tracked.item() == 1


def test_head_rejects_bad_input() -> None:
    head = ProjectionHead(8, out_dim=4)
    with pytest.raises(UclipError, match=r"expects \(B, 8\) inputs, got \(3, 7\)"):
        head(torch.zeros(3, 7))
    with pytest.raises(UclipError, match="batch of 1 in training mode"):
        head(torch.zeros(1, 8))
    assert head.eval()(unit(1, 8, dtype=torch.float32)).shape == (1, 4)
    with pytest.raises(UclipError, match="in_dim must be an integer >= 1"):
        ProjectionHead(0)


# ---------------------------------------------------------------- Eq. 5–7: losses


def brute_force_info_nce(q: torch.Tensor, k: torch.Tensor, tau: float) -> float:
    """Eq. 5 with loops over i and j."""
    b = q.shape[0]
    total = 0.0
    for i in range(b):
        sims = [float(q[i] @ k[j]) / tau for j in range(b)]
        log_denominator = math.log(sum(math.exp(s) for s in sims))
        total += -(sims[i] - log_denominator)
    return total / b


def brute_force_intra(e_c, v_c, e_m, m_m) -> float:
    """Eq. 7 with a loop over i and explicit squared distances."""
    b = e_c.shape[0]
    total = 0.0
    for i in range(b):
        total += sum((x - y) ** 2 for x, y in zip(e_c[i].tolist(), v_c[i].tolist(), strict=True))
        total += sum((x - y) ** 2 for x, y in zip(e_m[i].tolist(), m_m[i].tolist(), strict=True))
    return total / (2 * b)


def four_embeddings(b: int = 6, d: int = 5) -> list[torch.Tensor]:
    return [unit(b, d, seed=s) for s in (30, 31, 32, 33)]


@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_info_nce_matches_brute_force(tau: float) -> None:
    q, k, *_ = four_embeddings()
    assert info_nce(q, k, tau).item() == pytest.approx(brute_force_info_nce(q, k, tau), abs=1e-10)


def test_info_nce_hand_computed_case() -> None:
    # B = 2, orthogonal positives: sims are [[1, 0], [0, 1]], so each row is -log(e / (e + 1)).
    eye = torch.eye(2, dtype=torch.float64)
    assert info_nce(eye, eye, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_symmetric_and_named_losses_average_both_directions() -> None:
    e_c, e_m, v_c, m_m = four_embeddings()
    tau = 0.1
    sym = 0.5 * (brute_force_info_nce(e_c, e_m, tau) + brute_force_info_nce(e_m, e_c, tau))
    assert symmetric_info_nce(e_c, e_m, tau).item() == pytest.approx(sym, abs=1e-10)
    assert text_alignment_loss(e_c, e_m, tau).item() == pytest.approx(sym, abs=1e-10)
    pseudo = 0.5 * (brute_force_info_nce(v_c, m_m, tau) + brute_force_info_nce(m_m, v_c, tau))
    assert pseudo_alignment_loss(v_c, m_m, tau).item() == pytest.approx(pseudo, abs=1e-10)
    inter = inter_alignment_loss(e_c, e_m, v_c, m_m, tau).item()
    assert inter == pytest.approx(sym + pseudo, abs=1e-10)
    # The asymmetry is real, so averaging matters.
    assert info_nce(e_c, e_m, tau).item() != pytest.approx(info_nce(e_m, e_c, tau).item())


def test_intra_alignment_matches_brute_force_and_cosine_form() -> None:
    e_c, e_m, v_c, m_m = four_embeddings()
    got = intra_alignment_loss(e_c, v_c, e_m, m_m).item()
    assert got == pytest.approx(brute_force_intra(e_c, v_c, e_m, m_m), abs=1e-12)
    # Unit vectors: ||x - y||^2 = 2 (1 - x.y).
    cosine_form = ((1 - (e_c * v_c).sum(1)) + (1 - (e_m * m_m).sum(1))).mean().item()
    assert got == pytest.approx(cosine_form, abs=1e-12)
    assert intra_alignment_loss(e_c, e_c, e_m, e_m).item() == 0.0


def test_uclip_loss_total_and_ablations() -> None:
    e_c, e_m, v_c, m_m = four_embeddings()
    tau, lam = 0.05, 0.3
    text = 0.5 * (brute_force_info_nce(e_c, e_m, tau) + brute_force_info_nce(e_m, e_c, tau))
    pseudo = 0.5 * (brute_force_info_nce(v_c, m_m, tau) + brute_force_info_nce(m_m, v_c, tau))
    intra = brute_force_intra(e_c, v_c, e_m, m_m)
    out = uclip_loss(e_c, e_m, v_c, m_m, tau=tau, lam=lam)
    assert set(out) == {"loss", "text", "pseudo", "intra"}
    assert out["text"].item() == pytest.approx(text, abs=1e-10)
    assert out["pseudo"].item() == pytest.approx(pseudo, abs=1e-10)
    assert out["intra"].item() == pytest.approx(intra, abs=1e-10)
    assert out["loss"].item() == pytest.approx(text + pseudo + lam * intra, abs=1e-10)
    flags = {"use_text": text, "use_pseudo": pseudo, "use_intra": lam * intra}
    for flag, contribution in flags.items():
        ablated = uclip_loss(e_c, e_m, v_c, m_m, tau=tau, lam=lam, **{flag: False})
        expected = text + pseudo + lam * intra - contribution
        assert ablated["loss"].item() == pytest.approx(expected, abs=1e-10)
        # The switched-off term is still reported, with its true value.
        for key in ("text", "pseudo", "intra"):
            assert ablated[key].item() == pytest.approx(out[key].item(), abs=1e-12)


def test_uclip_loss_default_hyperparameters() -> None:
    e_c, e_m, v_c, m_m = four_embeddings()
    out = uclip_loss(e_c, e_m, v_c, m_m)
    text = 0.5 * (brute_force_info_nce(e_c, e_m, 0.01) + brute_force_info_nce(e_m, e_c, 0.01))
    assert out["text"].item() == pytest.approx(text, abs=1e-8)
    expected = out["text"] + out["pseudo"] + 0.1 * out["intra"]
    assert out["loss"].item() == pytest.approx(expected.item(), abs=1e-10)


def test_gradients_reach_both_heads_and_ablated_terms_give_none() -> None:
    torch.manual_seed(0)
    f_c, f_m = ProjectionHead(8, out_dim=6), ProjectionHead(5, out_dim=6)
    e_c, v_c = unit(10, 8, seed=40, dtype=torch.float32), unit(10, 8, seed=41, dtype=torch.float32)
    e_m, m_m = unit(10, 5, seed=42, dtype=torch.float32), unit(10, 5, seed=43, dtype=torch.float32)
    out = uclip_loss(f_c(e_c), f_m(e_m), f_c(v_c), f_m(m_m), tau=0.1)
    out["loss"].backward()
    for head in (f_c, f_m):
        for p in head.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
        assert head.net[0].weight.grad.abs().sum() > 0
    # Only intra on: the reported text/pseudo values carry no graph.
    only_intra = uclip_loss(
        f_c(e_c), f_m(e_m), f_c(v_c), f_m(m_m), use_text=False, use_pseudo=False
    )
    assert not only_intra["text"].requires_grad and not only_intra["pseudo"].requires_grad
    assert only_intra["loss"].requires_grad
    torch.testing.assert_close(only_intra["loss"], 0.1 * only_intra["intra"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a, b: info_nce(a, b[:3], 0.1), r"got shapes \(6, 5\) and \(3, 5\)"),
        (lambda a, b: info_nce(a, b[:, :4], 0.1), r"got shapes \(6, 5\) and \(6, 4\)"),
        (lambda a, b: info_nce(a[0], b[0], 0.1), "expects two 2-D"),
        (lambda a, b: info_nce(a, b, 0.0), "tau must be a finite number > 0"),
        (lambda a, b: info_nce(a[:0], b[:0], 0.1), "empty batch"),
        (lambda a, b: intra_alignment_loss(a, b, a, b[:, :3]), "intra_alignment_loss got shapes"),
        (lambda a, b: uclip_loss(a, b, a[:4], b[:4]), "batch sizes 6 and 4"),
        (lambda a, b: uclip_loss(a, b, a, b, lam=-1.0), "lam must be a finite number >= 0"),
        (
            lambda a, b: uclip_loss(a, b, a, b, use_text=False, use_pseudo=False, use_intra=False),
            "every term switched off",
        ),
    ],
)
def test_losses_reject_bad_input(call, message: str) -> None:
    a, b, *_ = four_embeddings()
    with pytest.raises(UclipError, match=message):
        call(a, b)
