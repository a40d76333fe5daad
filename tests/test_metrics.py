"""Retrieval Recall@K, tie rules, accuracy, macro-F1 and bitext accuracy vs hand-computed
cases, sklearn and a brute-force argsort ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uclip.errors import UclipError
from uclip.eval.metrics import (
    accuracy,
    bitext_accuracy,
    first_caption_indices,
    macro_f1,
    retrieval_ranks,
    retrieval_recall,
)

torch.set_num_threads(1)


def embeddings_for_scores(scores: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image/text embeddings whose dot products are exactly ``scores`` (images x captions)."""
    s = torch.tensor(scores, dtype=torch.float64)
    return torch.eye(s.shape[0], dtype=torch.float64), s.T.contiguous()


# 3 images, 2 captions each. Hand-derived ranks (0-based, see each row/column):
#   image->text, all captions:   img0 best correct 0.9 -> 0; img1 best 0.7 < 0.8 -> 1; img2 -> 0
#   image->text, first captions: candidates are captions 0, 2, 4:
#       img0 [0.1, 0.5, 0.3] -> 2;  img1 [0.8, 0.2, 0.1] -> 1;  img2 [0.0, 0.25, 0.6] -> 0
#   text->image (columns): cap0 [0.1,0.8,0.0] -> 1; cap1 -> 0; cap2 [0.5,0.2,0.25] -> 2;
#       cap3 [0.2,0.7,0.3] -> 0; cap4 [0.3,0.1,0.6] -> 0; cap5 [0.0,0.3,0.5] -> 0
SCORES = [
    [0.1, 0.9, 0.5, 0.2, 0.3, 0.0],
    [0.8, 0.0, 0.2, 0.7, 0.1, 0.3],
    [0.0, 0.1, 0.25, 0.3, 0.6, 0.5],
]
C2I = [0, 0, 1, 1, 2, 2]


def test_protocols_differ_on_hand_computed_case() -> None:
    img, txt = embeddings_for_scores(SCORES)
    i2t, t2i = retrieval_ranks(img, txt, C2I, protocol="all")
    assert i2t.tolist() == [0, 1, 0]
    assert t2i.tolist() == [1, 0, 2, 0, 0, 0]
    i2t, t2i = retrieval_ranks(img, txt, C2I, protocol="first")
    assert i2t.tolist() == [2, 1, 0]
    assert t2i.tolist() == [1, 2, 0]

    r_all = retrieval_recall(img, txt, C2I, ks=(1, 2, 3), protocol="all")
    assert r_all == pytest.approx(
        {"i2t_R@1": 2 / 3, "i2t_R@2": 1.0, "i2t_R@3": 1.0,
         "t2i_R@1": 4 / 6, "t2i_R@2": 5 / 6, "t2i_R@3": 1.0}
    )  # fmt: skip
    r_first = retrieval_recall(img, txt, C2I, ks=(1, 2, 3), protocol="first")
    assert r_first == pytest.approx(
        {"i2t_R@1": 1 / 3, "i2t_R@2": 2 / 3, "i2t_R@3": 1.0,
         "t2i_R@1": 1 / 3, "t2i_R@2": 2 / 3, "t2i_R@3": 1.0}
    )  # fmt: skip


def test_all_protocol_ignores_caption_order_and_first_uses_lowest_index() -> None:
    img, txt = embeddings_for_scores(SCORES)
    perm = [5, 2, 0, 3, 1, 4]
    c2i = [C2I[p] for p in perm]
    assert retrieval_recall(img, txt[perm], c2i, ks=(1, 2)) == retrieval_recall(
        img, txt, C2I, ks=(1, 2)
    )
    # After the permutation the first (lowest-index) captions are old captions 5, 2, 1... per
    # image: image 0 -> position 2 (old 0), image 1 -> position 1 (old 2), image 2 -> 0 (old 5).
    assert first_caption_indices(torch.tensor(c2i), 3).tolist() == [2, 1, 0]


def test_ties_pessimistic_and_optimistic() -> None:
    # A collapsed model (every score equal) must not get perfect recall by default.
    img, txt = embeddings_for_scores([[0.5, 0.5], [0.5, 0.5]])
    pess = retrieval_recall(img, txt, [0, 1], ks=(1, 2))
    opt = retrieval_recall(img, txt, [0, 1], ks=(1, 2), ties="optimistic")
    assert pess == {"i2t_R@1": 0.0, "i2t_R@2": 1.0, "t2i_R@1": 0.0, "t2i_R@2": 1.0}
    assert opt == {"i2t_R@1": 1.0, "i2t_R@2": 1.0, "t2i_R@1": 1.0, "t2i_R@2": 1.0}

    # img0: its correct caption 0 ties a wrong one (caption 2); captions 0 and 1 of img0 tie
    # each other, which must not count against it.
    scores = [[0.5, 0.5, 0.5, 0.25], [0.25, 0.0, 0.75, 0.5]]
    img, txt = embeddings_for_scores(scores)
    c2i = [0, 0, 1, 1]
    i2t, _ = retrieval_ranks(img, txt, c2i)
    assert i2t.tolist() == [1, 0]  # img0: caption 2 (wrong) >= 0.5; img1: 0.75 is correct
    i2t, _ = retrieval_ranks(img, txt, c2i, ties="optimistic")
    assert i2t.tolist() == [0, 0]
    # The rule does not depend on candidate order.
    rev = [3, 2, 1, 0]
    i2t_rev, _ = retrieval_ranks(img, txt[rev], [c2i[r] for r in rev])
    assert i2t_rev.tolist() == [1, 0]
    # Two correct captions tying each other: rank 0 under both rules.
    img, txt = embeddings_for_scores([[0.75, 0.75, 0.25], [0.0, 0.0, 1.0]])
    for ties in ("pessimistic", "optimistic"):
        assert retrieval_ranks(img, txt, [0, 0, 1], ties=ties)[0].tolist() == [0, 0]


def brute_force_ranks(img: np.ndarray, txt: np.ndarray, c2i: np.ndarray) -> tuple[list, list]:
    """Karpathy-style reference: argsort each query's scores, rank = first correct position."""
    scores = img @ txt.T
    i2t = []
    for i in range(img.shape[0]):
        order = list(np.argsort(-scores[i], kind="stable"))
        i2t.append(min(order.index(t) for t in np.flatnonzero(c2i == i)))
    t2i = []
    for t in range(txt.shape[0]):
        order = list(np.argsort(-scores[:, t], kind="stable"))
        t2i.append(order.index(c2i[t]))
    return i2t, t2i


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_ranks_match_brute_force_on_random_data(chunk_size: int) -> None:
    gen = torch.Generator().manual_seed(0)
    n_img, dim = 23, 8
    c2i = torch.cat([torch.arange(n_img), torch.randint(0, n_img, (40,), generator=gen)])
    c2i = c2i[torch.randperm(len(c2i), generator=gen)]
    img = torch.nn.functional.normalize(torch.randn(n_img, dim, generator=gen), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(len(c2i), dim, generator=gen), dim=1)
    i2t, t2i = retrieval_ranks(img, txt, c2i, chunk_size=chunk_size)
    ref_i2t, ref_t2i = brute_force_ranks(img.double().numpy(), txt.double().numpy(), c2i.numpy())
    assert i2t.tolist() == ref_i2t
    assert t2i.tolist() == ref_t2i
    recall = retrieval_recall(img, txt, c2i, ks=(1, 5, 10), chunk_size=chunk_size)
    for k in (1, 5, 10):
        assert recall[f"i2t_R@{k}"] == pytest.approx(np.mean(np.array(ref_i2t) < k))
        assert recall[f"t2i_R@{k}"] == pytest.approx(np.mean(np.array(ref_t2i) < k))
    # With continuous random scores there are no ties, so both rules agree.
    assert retrieval_recall(img, txt, c2i, ties="optimistic", chunk_size=chunk_size) == recall

    first = first_caption_indices(c2i, n_img)
    ref_i2t, ref_t2i = brute_force_ranks(img.numpy(), txt[first].numpy(), np.arange(n_img))
    i2t, t2i = retrieval_ranks(img, txt, c2i, protocol="first", chunk_size=chunk_size)
    assert (i2t.tolist(), t2i.tolist()) == (ref_i2t, ref_t2i)


def test_float16_inputs_are_upcast() -> None:
    img, txt = embeddings_for_scores(SCORES)
    assert retrieval_recall(img.half(), txt.half(), C2I) == retrieval_recall(img, txt, C2I)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"caption_to_image": [0, 0, 1]}, "3 entries for 6 captions"),
        ({"caption_to_image": [0, 0, 1, 1, 2, 3]}, "outside 0..2"),
        ({"caption_to_image": [0, 0, 0, 1, 1, 1]}, "1 of 3 images have no caption"),
        ({"caption_to_image": [0.0, 0, 1, 1, 2, 2]}, "integers"),
        ({"protocol": "some"}, "protocol must be"),
        ({"ties": "random"}, "ties must be"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"ks": (0, 5)}, "ks must be"),
        ({"text_emb": torch.zeros(6, 2)}, "dim 3 != text_emb dim 2"),
        ({"image_emb": torch.full((3, 3), float("nan"))}, "NaN"),
        ({"image_emb": torch.zeros(0, 3)}, "empty"),
        ({"image_emb": torch.zeros(3, 3, dtype=torch.long)}, "floating point"),
    ],
)
def test_retrieval_bad_input_messages(kwargs: dict, message: str) -> None:
    img, txt = embeddings_for_scores(SCORES)
    args = {"image_emb": img, "text_emb": txt, "caption_to_image": C2I} | kwargs
    with pytest.raises(UclipError, match=message):
        retrieval_recall(**args)


def test_accuracy_and_macro_f1_hand_computed() -> None:
    preds = [0, 0, 1, 2, 2, 2]
    labels = [0, 1, 1, 2, 2, 0]
    assert accuracy(preds, labels) == pytest.approx(4 / 6)
    # class 0: TP 1, FP 1, FN 1 -> 2/4; class 1: TP 1, FN 1 -> 2/3; class 2: TP 2, FP 1 -> 4/5;
    # class 3 never occurs -> left out of the mean.
    expected = (0.5 + 2 / 3 + 0.8) / 3
    assert macro_f1(preds, labels, num_classes=4) == pytest.approx(expected)
    assert macro_f1(np.array(preds), torch.tensor(labels), 4) == pytest.approx(expected)
    # A class with support that is never predicted counts as 0.
    assert macro_f1([0, 0], [0, 1], num_classes=2) == pytest.approx((2 / 3 + 0.0) / 2)
    assert macro_f1(labels, labels, num_classes=3) == 1.0


def test_macro_f1_matches_sklearn_on_random_data() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n_classes = int(rng.integers(2, 12))
        labels = rng.integers(0, n_classes, size=int(rng.integers(1, 200)))
        noise = rng.random(labels.shape) < 0.4
        preds = np.where(noise, rng.integers(0, n_classes, labels.shape), labels)
        ref = sklearn_metrics.f1_score(labels, preds, average="macro", zero_division=0)
        assert macro_f1(preds, labels, n_classes) == pytest.approx(ref), trial
        assert accuracy(preds, labels) == pytest.approx(
            sklearn_metrics.accuracy_score(labels, preds)
        )


@pytest.mark.parametrize(
    ("preds", "labels", "num_classes", "message"),
    [
        ([0, 1], [0], 2, "2 entries but labels has 1"),
        ([], [], 2, "empty"),
        ([0, 2], [0, 1], 2, "outside 0..1"),
        ([0, 1], [0, 1], 0, "num_classes"),
        ([[0, 1]], [[0, 1]], 2, "1-D"),
    ],
)
def test_classification_metric_errors(preds, labels, num_classes, message) -> None:
    with pytest.raises(UclipError, match=message):
        macro_f1(preds, labels, num_classes)


def test_bitext_accuracy_hand_case() -> None:
    # S = src @ tgt.T. x2en (rows): row0 hit, row1 0.4 < 0.8 miss, row2 hit -> 2/3.
    # en2x (columns): col0 hit, col1 0.4 < 0.5 miss, col2 0.7 < 0.8 miss -> 1/3.
    scores = [[0.9, 0.1, 0.2], [0.3, 0.4, 0.8], [0.1, 0.5, 0.7]]
    src, tgt = embeddings_for_scores(scores)
    result = bitext_accuracy(src, tgt, chunk_size=2)
    assert result == pytest.approx({"x2en_acc": 2 / 3, "en2x_acc": 1 / 3})
    # Identical rows everywhere: pessimistic 0, optimistic 1.
    same = torch.ones(4, 3)
    assert bitext_accuracy(same, same) == {"x2en_acc": 0.0, "en2x_acc": 0.0}
    assert bitext_accuracy(same, same, ties="optimistic") == {"x2en_acc": 1.0, "en2x_acc": 1.0}


def test_bitext_accuracy_matches_argmax_and_rejects_misaligned_rows() -> None:
    gen = torch.Generator().manual_seed(1)
    src, tgt = torch.randn(50, 6, generator=gen), torch.randn(50, 6, generator=gen)
    tgt = src + 1.5 * tgt  # partly aligned, so accuracy is neither 0 nor 1
    scores = src @ tgt.T
    expected_x2en = float((scores.argmax(1) == torch.arange(50)).double().mean())
    expected_en2x = float((scores.argmax(0) == torch.arange(50)).double().mean())
    result = bitext_accuracy(src, tgt, chunk_size=16)
    assert result == pytest.approx({"x2en_acc": expected_x2en, "en2x_acc": expected_en2x})
    assert 0 < result["x2en_acc"] < 1
    with pytest.raises(UclipError, match="aligned one to one"):
        bitext_accuracy(src, tgt[:49])


def test_query_ranks_hand_computed() -> None:
    from uclip.eval.metrics import query_ranks

    candidates = torch.eye(3)
    # query 0 finds row 0; query 1 prefers row 2 (its own row 1 is second); query 2 finds row 2
    queries = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.0, 0.0, 1.0]])
    assert query_ranks(queries, candidates, [0, 1, 2]).tolist() == [0, 1, 0]
    # a tie with a wrong candidate counts against the query (pessimistic), or not (optimistic)
    tied = torch.tensor([[0.0, 0.6, 0.6]])
    assert query_ranks(tied, candidates, [1]).tolist() == [1]
    assert query_ranks(tied, candidates, [1], ties="optimistic").tolist() == [0]
    with pytest.raises(UclipError, match="one candidate index per query"):
        query_ranks(queries, candidates, [0, 1])
    with pytest.raises(UclipError, match=r"outside 0\.\.2"):
        query_ranks(queries, candidates, [0, 1, 3])


def test_sign_test_hand_computed() -> None:
    from uclip.eval.stats import sign_test

    # 3 wins, 1 loss, 1 tie: P(X >= 3 | n=4) = (4 + 1) / 16; P(X >= 1) = 15 / 16
    got = sign_test([2, 3, 4, 5, 1], [1, 2, 3, 6, 1])
    assert (got["wins"], got["losses"], got["ties"]) == (3, 1, 1)
    assert got["p_a"] == pytest.approx(5 / 16) and got["p_b"] == pytest.approx(15 / 16)
    assert sign_test([1.0], [1.0])["p_a"] == 1.0  # all ties: no evidence either way
    with pytest.raises(UclipError):
        sign_test([1.0], [])


def test_paired_bootstrap_against_hand_cases_and_brute_force() -> None:
    import itertools

    import numpy as np

    from uclip.eval.stats import paired_bootstrap

    # Identical outcomes: every replicate's difference is exactly 0.
    same = paired_bootstrap([[1, 0, 1]], [[1, 0, 1]], n_boot=200)
    assert same["diff"] == same["ci_low"] == same["ci_high"] == 0.0
    assert same["p_a_not_better"] == 1.0
    # a wins on every item of both languages: the interval is one point, p = 0.
    won = paired_bootstrap([[1, 1], [1, 1, 1]], [[0, 0], [0, 0, 0]], n_boot=200)
    assert won["diff"] == won["ci_low"] == won["ci_high"] == 1.0 and won["p_a_not_better"] == 0
    # One language, per-item differences (1, 0): the replicate mean over all 2^2 equally likely
    # resamples is {1, .5, .5, 0}, so P(diff <= 0) = 1/4 and the mean of replicates is 0.5.
    got = paired_bootstrap([[1, 1]], [[0, 1]], n_boot=20000, seed=1)
    exact = [np.mean(s) for s in itertools.product([1.0, 0.0], repeat=2)]
    assert got["diff"] == pytest.approx(np.mean(exact)) == 0.5
    assert got["p_a_not_better"] == pytest.approx(np.mean([e <= 0 for e in exact]), abs=0.02)
    # The pairing matters: unpaired noise would give a wide interval; paired is one point.
    paired = paired_bootstrap([[1, 0] * 50], [[0, -1] * 50], n_boot=500)
    assert paired["ci_low"] == paired["ci_high"] == 1.0
    with pytest.raises(UclipError):
        paired_bootstrap([[1, 0]], [[1]])
