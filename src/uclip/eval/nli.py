"""The NLI probe of CLT's Experiment 3 (paper §3.4, Tables 2–3).

A frozen text encoder e embeds premise p and hypothesis h; a feed-forward classifier with two
hidden layers of 2048 reads

    x = e(p) ⊕ e(h) ⊕ |e(p) − e(h)| ⊕ e(p) * e(h)        (Conneau et al., 2017)

trained with Adam (lr 2e-5) for up to 100 epochs with early stopping, on English NLI data
(MultiNLI train + dev, examples without annotator agreement dropped), and scored per language on
XNLI test (cross-lingual transfer). The data (readers of XNLI / MultiNLI files, and a synthetic
set) is in :mod:`uclip.data.nli`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from uclip.data.nli import NLIExample
from uclip.errors import UclipError
from uclip.eval.metrics import accuracy

# ------------------------------------------------------------------------------------ the probe


def nli_features(premise: Tensor, hypothesis: Tensor) -> Tensor:
    """x = e(p) ⊕ e(h) ⊕ |e(p) − e(h)| ⊕ e(p) * e(h): (N, d), (N, d) -> (N, 4d)."""
    if premise.shape != hypothesis.shape or premise.ndim != 2:
        raise UclipError(
            f"premise and hypothesis embeddings must both be (N, d), got "
            f"{tuple(premise.shape)} and {tuple(hypothesis.shape)}"
        )
    return torch.cat([premise, hypothesis, (premise - hypothesis).abs(), premise * hypothesis], 1)


class NLIClassifier(nn.Sequential):
    """Feed-forward: 2 hidden layers of ``hidden`` (2048 in the paper), ReLU, 3 classes."""

    def __init__(self, embed_dim: int, hidden: int = 2048, num_classes: int = 3) -> None:
        super().__init__(
            nn.Linear(4 * embed_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )


@dataclass
class NLIProbeResult:
    classifier: NLIClassifier
    best_epoch: int
    dev_accuracy: float
    epochs_run: int
    history: list[float] = field(default_factory=list)


def _predict(classifier: nn.Module, features: Tensor, batch_size: int = 1024) -> Tensor:
    classifier.eval()
    with torch.no_grad():
        return torch.cat(
            [
                classifier(features[i : i + batch_size]).argmax(1)
                for i in range(0, len(features), batch_size)
            ]
        )


def train_nli_probe(
    features: Tensor,
    labels: Tensor,
    dev_features: Tensor | None = None,
    dev_labels: Tensor | None = None,
    *,
    hidden: int = 2048,
    lr: float = 2e-5,
    epochs: int = 100,
    patience: int = 5,
    batch_size: int = 64,
    dev_fraction: float = 0.1,
    seed: int = 0,
) -> NLIProbeResult:
    """Train the classifier on (N, 4d) features (Adam, lr 2e-5, up to 100 epochs), keeping the
    weights of the best dev-accuracy epoch and stopping after ``patience`` epochs without gain.
    Without a dev set, ``dev_fraction`` of the training examples (seeded) is held out."""
    if features.ndim != 2 or features.shape[1] % 4 or len(features) != len(labels):
        raise UclipError(
            f"features must be (N, 4d) with one label per row, got {tuple(features.shape)} and "
            f"{len(labels)} labels"
        )
    gen = torch.Generator().manual_seed(seed)
    if dev_features is None:
        perm = torch.randperm(len(features), generator=gen)
        n_dev = max(1, int(len(features) * dev_fraction))
        dev_idx, train_idx = perm[:n_dev], perm[n_dev:]
        dev_features, dev_labels = features[dev_idx], labels[dev_idx]
        features, labels = features[train_idx], labels[train_idx]
    if len(features) == 0:
        raise UclipError("no NLI training examples left after holding out the dev split")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = NLIClassifier(features.shape[1] // 4, hidden)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    best_acc, best_epoch, best_state, history, waited = -1.0, 0, None, [], 0
    epoch = 0
    for epoch in range(1, epochs + 1):
        classifier.train()
        for idx in torch.randperm(len(features), generator=gen).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(classifier(features[idx]), labels[idx]).backward()
            optimizer.step()
        acc = accuracy(_predict(classifier, dev_features), dev_labels)
        history.append(acc)
        if acc > best_acc:
            best_acc, best_epoch, waited = acc, epoch, 0
            best_state = copy.deepcopy(classifier.state_dict())
        else:
            waited += 1
            if waited >= patience:
                break
    assert best_state is not None
    classifier.load_state_dict(best_state)
    classifier.eval()
    return NLIProbeResult(classifier, best_epoch, best_acc, epoch, history)


def _embed_pairs(
    embed: Callable[[list[str]], Tensor], examples: Sequence[NLIExample]
) -> tuple[Tensor, Tensor]:
    """Features of every example, embedding each distinct sentence once."""
    sentences = list(dict.fromkeys(s for ex in examples for s in (ex.premise, ex.hypothesis)))
    table = embed(sentences)
    if table.shape[0] != len(sentences):
        raise UclipError(f"embed returned {table.shape[0]} rows for {len(sentences)} sentences")
    row = {s: i for i, s in enumerate(sentences)}
    p = table[[row[ex.premise] for ex in examples]]
    h = table[[row[ex.hypothesis] for ex in examples]]
    y = torch.tensor([ex.label for ex in examples], dtype=torch.long)
    return nli_features(p.float(), h.float()), y


def run_nli_probe(
    embed: Callable[[list[str]], Tensor],
    train: Sequence[NLIExample],
    test: Sequence[NLIExample],
    dev: Sequence[NLIExample] | None = None,
    **kwargs: object,
) -> dict[str, object]:
    """Train the probe on ``train`` (frozen ``embed``) and score it per language of ``test``.

    Returns ``{"per_language": {lang: accuracy}, "average": mean over languages, "dev_accuracy",
    "best_epoch", "epochs_run", "n_train", "n_test"}``.
    """
    if not train or not test:
        raise UclipError("the NLI probe needs training and test examples")
    x, y = _embed_pairs(embed, train)
    dev_x = dev_y = None
    if dev:
        dev_x, dev_y = _embed_pairs(embed, dev)
    result = train_nli_probe(x, y, dev_x, dev_y, **kwargs)  # type: ignore[arg-type]
    per_language: dict[str, float] = {}
    for lang in sorted({ex.lang for ex in test}):
        subset = [ex for ex in test if ex.lang == lang]
        tx, ty = _embed_pairs(embed, subset)
        per_language[lang] = accuracy(_predict(result.classifier, tx), ty)
    return {
        "per_language": per_language,
        "average": sum(per_language.values()) / len(per_language),
        "dev_accuracy": result.dev_accuracy,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "n_train": len(train),
        "n_test": len(test),
    }
