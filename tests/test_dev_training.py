"""Dev protocol and model selection: ridge baseline, closed-form init, dev scoring, early stopping,
resume keeping the best-so-far state, and the disjoint Tatoeba split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from test_trainer import make_objective
from uclip.data.tatoeba import split_tatoeba, tatoeba_pairs
from uclip.errors import UclipError
from uclip.eval.dev import DevTask, dev_ceiling, dev_metrics
from uclip.features.corpora import DEV_MULTI30K_LANGS, dev_sets
from uclip.method.heads import ProjectionHead
from uclip.method.model import UCLIPHeads
from uclip.method.ridge import fit_ridge, init_heads_from_ridge
from uclip.paths import ASSETS_DIR
from uclip.train.args import TrainArgs
from uclip.train.trainer import DEV_LOG_FILE, Trainer

BUNDLED = ASSETS_DIR / "quickstart"


# ---- ridge ----------------------------------------------------------------------------------
def test_fit_ridge_matches_the_normal_equations_and_lstsq() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=g), torch.randn(50, 4, generator=g)
    lam = 0.7
    w = fit_ridge(x, y, lam)
    assert w.shape == (4, 6)
    # gradient of ||xW^T - y||^2 + lam||W||^2 vanishes at the optimum
    grad = (x.double() @ w.double().T - y.double()).T @ x.double() + lam * w.double()
    assert grad.abs().max() < 1e-5  # W is returned in float32
    # lam = 0 is ordinary least squares
    ols = torch.linalg.lstsq(x.double(), y.double()).solution.T.float()
    assert torch.allclose(fit_ridge(x, y, 0.0), ols, atol=1e-5)


def test_fit_ridge_rejects_bad_input() -> None:
    with pytest.raises(UclipError, match="same N"):
        fit_ridge(torch.zeros(3, 2), torch.zeros(4, 2), 1.0)
    with pytest.raises(UclipError, match="lam"):
        fit_ridge(torch.zeros(3, 2), torch.zeros(3, 2), -1.0)


def test_ridge_init_makes_linear_heads_the_baseline_and_residual_heads_start_there() -> None:
    g = torch.Generator().manual_seed(1)
    e_c = F.normalize(torch.randn(80, 6, generator=g), dim=-1)
    e_m = F.normalize(torch.randn(80, 5, generator=g), dim=-1)
    w = fit_ridge(e_m, e_c, 1.0)
    expected_m = F.normalize(e_m @ w.T, dim=-1)
    for kind, embed_dim in (("linear", 6), ("residual", 9)):
        heads = UCLIPHeads(6, 5, embed_dim=embed_dim, kind=kind).eval()
        init_heads_from_ridge(heads, e_c, e_m, 1.0)
        got_m, got_c = heads.f_m(e_m), heads.f_c(e_c)
        # the first 6 coordinates carry the map, the padding is zero
        assert torch.allclose(got_m[:, :6], expected_m, atol=1e-5)
        assert torch.allclose(got_c[:, :6], e_c, atol=1e-5)
        assert got_m[:, 6:].abs().sum() < 1e-6


def test_mlp_head_has_no_linear_path() -> None:
    with pytest.raises(UclipError, match="linear"):
        ProjectionHead(4, 4).init_linear(torch.eye(4))
    with pytest.raises(UclipError, match="kind"):
        ProjectionHead(4, 4, kind="deep")


# ---- dev metrics ----------------------------------------------------------------------------
def _task(name: str, lang: str, foreign: torch.Tensor, english: torch.Tensor) -> DevTask:
    return DevTask(name, lang, foreign, english, english, foreign)


def test_dev_metrics_hand_computed() -> None:
    eye = torch.eye(3)
    swapped = eye[[1, 0, 2]]  # rows 0 and 1 find each other's translation: 1 of 3 right
    tasks = [
        _task("multi30k-val", "de", eye, eye),
        _task("multi30k-val", "fr", swapped, eye),
        _task("tatoeba-dev", "cs", eye, eye),
    ]
    identity = lambda t: t  # noqa: E731
    m = dev_metrics(tasks, identity, identity)
    assert m["multi30k-val de"] == 1.0
    assert m["multi30k-val fr"] == pytest.approx(1 / 3)
    assert m["multi30k-val"] == pytest.approx(2 / 3)
    assert m["tatoeba-dev"] == 1.0
    # the two domains weigh equally, whatever their number of languages
    assert m["score"] == pytest.approx((2 / 3 + 1) / 2)
    assert dev_ceiling(tasks) == m  # ceiling uses the multilingual side (same tensors here)


# ---- trainer: dev selection, early stopping, resume -------------------------------------------
class ScriptedEvaluator:
    """Returns a fixed sequence of dev scores; remembers the weights it saw."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.calls, self.seen = list(scores), 0, []

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        self.seen.append({k: v.clone() for k, v in model.state_dict().items()})
        score = self.scores[min(self.calls, len(self.scores) - 1)]
        self.calls += 1
        return {"score": score}


def _args(**kw) -> TrainArgs:
    base = dict(batch_size=16, epochs=10, checkpoint_every=2, log_every=1, progress=False, lr=1e-2)
    return TrainArgs(**{**base, **kw})


def test_early_stopping_keeps_the_best_dev_weights(tmp_path: Path) -> None:
    obj = make_objective()
    # evaluations at steps 0, 2, 4, 6, 8: best at step 4, then two without improvement
    evaluator = ScriptedEvaluator([0.1, 0.3, 0.5, 0.4, 0.45])
    trainer = Trainer(obj, _args(eval_every=2, early_stopping_patience=2), tmp_path, evaluator)
    result = trainer.train()
    assert result.stopped_early and result.best_step == 4 and result.best_score == 0.5
    assert result.steps == 8 < trainer.total_steps
    best_seen = evaluator.seen[2]
    state = obj.model.state_dict()
    assert all(torch.equal(state[k], best_seen[k]) for k in state)
    curve = [json.loads(line) for line in (tmp_path / DEV_LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in curve] == [0, 2, 4, 6, 8]
    assert curve[-1]["best_step"] == 4


def test_without_improvement_the_starting_point_wins(tmp_path: Path) -> None:
    """A closed-form init is kept when training only makes dev worse."""
    obj = make_objective()
    start = {k: v.clone() for k, v in obj.model.state_dict().items()}
    evaluator = ScriptedEvaluator([0.9, 0.1, 0.1, 0.1])
    result = Trainer(
        obj, _args(eval_every=2, early_stopping_patience=3), tmp_path, evaluator
    ).train()
    assert result.best_step == 0
    state = obj.model.state_dict()
    assert all(torch.equal(state[k], start[k]) for k in state)


def test_resume_keeps_the_best_so_far_state(tmp_path: Path) -> None:
    scores = [0.1, 0.6, 0.2, 0.3, 0.25, 0.2]
    full = make_objective()
    Trainer(
        full,
        _args(eval_every=2, early_stopping_patience=3),
        tmp_path / "a",
        ScriptedEvaluator(scores),
    ).train()

    # the same run, interrupted after step 4 (checkpoint at 4), then resumed
    part = make_objective()
    args = _args(eval_every=2, early_stopping_patience=3, max_steps=None)
    first = Trainer(part, args, tmp_path / "b", ScriptedEvaluator(scores))

    class Kill(Exception):
        pass

    original = first._checkpoint

    def checkpoint_then_die(step: int) -> None:
        original(step)
        if step == 4:
            raise Kill

    first._checkpoint = checkpoint_then_die  # type: ignore[method-assign]
    with pytest.raises(Kill):
        first.train()
    resumed_obj = make_objective()
    resumed = Trainer(resumed_obj, args, tmp_path / "b", ScriptedEvaluator(scores[3:]))
    result = resumed.train(resume=True)
    assert result.best_step == 2  # chosen before the kill, kept through the resume
    a, b = full.model.state_dict(), resumed_obj.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_eval_every_without_dev_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UclipError, match="dev"):
        Trainer(make_objective(), _args(eval_every=2), tmp_path)


def test_cosine_schedule_decays_to_zero(tmp_path: Path) -> None:
    trainer = Trainer(make_objective(), _args(schedule="cosine", epochs=2), tmp_path)
    total = trainer.total_steps
    assert trainer._lr_factor(0) == pytest.approx(1.0)
    assert trainer._lr_factor(total // 2) == pytest.approx(0.5, abs=0.1)
    assert trainer._lr_factor(total) == pytest.approx(0.0, abs=1e-9)


# ---- data: the dev sets never meet the banks or the training text ------------------------------
def test_tatoeba_split_is_disjoint_in_both_languages() -> None:
    split = split_tatoeba(BUNDLED)
    dev_en = {e for pairs in split.dev.values() for _, e in pairs}
    dev_foreign = {f for pairs in split.dev.values() for f, _ in pairs}
    bank = {f for texts in split.bank.values() for f in texts}
    train_en = set(split.english)
    assert dev_en and bank and train_en
    assert not dev_en & train_en
    assert not dev_foreign & bank
    # no training sentence has its translation in the bank
    translations = {
        f for lang in split.bank for f, e in tatoeba_pairs(BUNDLED, lang) if e in train_en
    }
    assert not translations & bank
    # deterministic: the same split every time
    assert split_tatoeba(BUNDLED).english[:50] == split.english[:50]


def test_dev_sets_cover_both_domains() -> None:
    sets = dev_sets(BUNDLED, tatoeba_per_lang=50, multi30k_per_lang=None, news_per_lang=0)
    names = {(s.name, s.lang) for s in sets}
    assert {("multi30k-val", lang) for lang in DEV_MULTI30K_LANGS} <= names
    assert ("tatoeba-dev", "fi") in names
    assert all(len(s.foreign) == len(s.english) > 0 for s in sets)
    assert all(len(s.foreign) <= 50 for s in sets if s.name == "tatoeba-dev")


def test_dev_metrics_under_csls_match_brute_force_with_the_mapped_reference() -> None:
    """CSLS dev top-1 = brute force of 2 cos(x, y) - r(y), r over the reference queries *after*
    f_M (the map the dev queries go through), and cosine is unchanged by the new arguments."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 6, generator=g)

    def f_m(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x @ w.T, dim=-1)

    def f_c(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)

    foreign = torch.randn(12, 6, generator=g)
    reference = torch.randn(20, 6, generator=g)
    # English rows near their translations, plus a shared "hub" direction on a few of them
    hub = F.normalize(f_m(reference).mean(0), dim=-1)
    english = f_m(foreign) + 0.6 * torch.randn(12, 4, generator=g)
    english[:4] += 1.5 * hub
    english = F.normalize(english, dim=-1)
    task = DevTask("news-dev", "kk", foreign, english, foreign, english)
    k = 3
    q, c, ref = f_m(foreign), f_c(english), f_m(reference)
    r = torch.stack([(ref @ y).topk(k).values.mean() for y in c])
    brute = sum(int((2 * (q[i] @ c.T) - r).argmax() == i) for i in range(12)) / 12
    got = dev_metrics([task], f_m, f_c, f"csls:k={k}", reference)
    assert got["news-dev kk"] == pytest.approx(brute)
    cosine = sum(int((q[i] @ c.T).argmax() == i) for i in range(12)) / 12
    assert dev_metrics([task], f_m, f_c)["news-dev kk"] == pytest.approx(cosine)
    assert brute != cosine  # the scorer changes the ranking here: the test can fail
    with pytest.raises(UclipError, match="reference"):
        dev_metrics([task], f_m, f_c, "csls")
