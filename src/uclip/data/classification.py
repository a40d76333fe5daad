"""Zero-shot classification: CIFAR-10 and STL-10 test sets, and uCLIP's translated class prompts
(``classification/translations_<dataset>.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uclip.data.archives import extract_archive
from uclip.data.io import IMAGE_SUFFIXES, PathLike, data_root, read_json
from uclip.data.languages import UCLIP_LANGUAGES, short_code, unknown_language
from uclip.data.records import ClassificationDataset, ClassificationPrompts
from uclip.errors import UclipError

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
STL10_CLASSES: tuple[str, ...] = (
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
)  # fmt: skip
ENGLISH_PROMPT_TEMPLATE = "a photo of a {}."

STL10_SIDE = 96


@dataclass(frozen=True)
class TranslationIssue:
    """A known problem in uCLIP's translated class prompts, and our correction."""

    found: str
    problem: str
    corrected: str


# Keys: (dataset, ISO language, English class name). The corrected strings are ours, not
# uCLIP's: they are used only with ``fix_translations=True``.
KNOWN_TRANSLATION_ISSUES: dict[tuple[str, str, str], TranslationIssue] = {
    ("cifar10", "fi", "deer"): TranslationIssue(
        "Eläimen kuva", "means 'a picture of an animal', not a deer", "Kuva peurasta"
    ),
    ("stl10", "fi", "deer"): TranslationIssue(
        "Eläimen kuva", "means 'a picture of an animal', not a deer", "Kuva peurasta"
    ),
    ("cifar10", "hr", "frog"): TranslationIssue(
        "Fotografija žaba", "uses the plural 'žaba' (frogs)", "Fotografija žabe"
    ),
    ("cifar10", "ro", "automobile"): TranslationIssue(
        "O fotografie a maşinii",
        "uses cedilla ş where the STL-10 file uses comma-below ș",
        "O fotografie a mașinii",
    ),
}


def _check_limit(limit_per_class: int | None) -> None:
    if limit_per_class is not None and (
        isinstance(limit_per_class, bool)
        or not isinstance(limit_per_class, int)
        or limit_per_class < 1
    ):
        raise UclipError(f"limit_per_class must be an integer >= 1, got {limit_per_class!r}")


def _load_class_folders(
    root: Path, classes: Sequence[str], name: str, limit_per_class: int | None
) -> ClassificationDataset:
    """One sub-folder per class (``root/<class>/*.jpg`` or ``root/test/<class>/*.jpg``)."""
    if not root.is_dir():
        raise UclipError(
            f"{name} images folder {root} does not exist: pass --images DIR with "
            "one folder per class"
        )
    if not (root / classes[0]).is_dir() and (root / "test").is_dir():
        root = root / "test"
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        raise UclipError(
            f"{len(missing)} of {len(classes)} {name} class folders are missing under {root} "
            f"(e.g. {missing[0]}/): pass --images DIR with one folder per class "
            f"({', '.join(classes)})"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UclipError(
                f"{name} class folder {root / cls} holds no images: pass --images "
                "DIR with the test images"
            )
        files = files[:limit_per_class] if limit_per_class else files
        paths.extend(files)
        labels.extend([label] * len(files))
    return ClassificationDataset(name, list(classes), paths, labels)


def load_cifar10(
    data_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    *,
    limit_per_class: int | None = None,
    cache_dir: PathLike | None = None,
) -> ClassificationDataset:
    """CIFAR-10 test set (10,000 32x32 JPEGs), classes in torchvision order.

    With ``images_dir``: a folder with one sub-folder per class. Otherwise the shipped
    ``images/cifar10_test_jpg.tar.gz`` is extracted once into ``cache_dir`` (default
    ``data/`` in :func:`~uclip.data.io.default_cache_dir`). Within a class, files are taken in
    sorted name order.
    """
    _check_limit(limit_per_class)
    if images_dir is not None:
        return _load_class_folders(
            Path(images_dir).expanduser(), CIFAR10_CLASSES, "CIFAR-10", limit_per_class
        )
    archive = data_root(data_dir, "CIFAR-10") / "images" / "cifar10_test_jpg.tar.gz"
    folder = extract_archive(archive, cache_dir)
    return _load_class_folders(folder, CIFAR10_CLASSES, "CIFAR-10", limit_per_class)


def load_stl10(
    images_dir: PathLike | None, *, limit_per_class: int | None = None
) -> ClassificationDataset:
    """STL-10 test set (8,000 96x96 images). Not shipped: ``images_dir`` is required.

    Accepts the standard binary release (``stl10_binary/test_X.bin`` + ``test_y.bin``: uint8,
    each image 3x96x96 stored channel by channel in column-major order, labels 1..10;
    memory-mapped, not loaded) or one sub-folder per class.
    """
    _check_limit(limit_per_class)
    if images_dir is None:
        raise UclipError(
            "STL-10 is not shipped with uclip: pass --images DIR with stl10_binary/ "
            "(test_X.bin, test_y.bin) or one folder per class"
        )
    root = Path(images_dir).expanduser()
    for folder in (root, root / "stl10_binary"):
        if (folder / "test_X.bin").is_file() or (folder / "test_y.bin").is_file():
            return _load_stl10_binary(folder, limit_per_class)
    return _load_class_folders(root, STL10_CLASSES, "STL-10", limit_per_class)


def _load_stl10_binary(folder: Path, limit_per_class: int | None) -> ClassificationDataset:
    x_path, y_path = folder / "test_X.bin", folder / "test_y.bin"
    for path in (x_path, y_path):
        if not path.is_file():
            raise UclipError(
                f"STL-10 file {path} is missing: pass --images DIR with both "
                "test_X.bin and test_y.bin"
            )
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
    per_image = 3 * STL10_SIDE * STL10_SIDE
    if labels.size == 0:
        raise UclipError(f"STL-10 file {y_path} is empty: the data set is empty")
    if labels.min() < 0 or labels.max() >= len(STL10_CLASSES):
        raise UclipError(f"STL-10 labels in {y_path} must be 1..10: is it the STL-10 binary?")
    if x_path.stat().st_size != labels.size * per_image:
        raise UclipError(
            f"STL-10 {x_path} holds {x_path.stat().st_size} bytes, expected "
            f"{labels.size} x {per_image} for {labels.size} labels: restore the "
            "files"
        )
    raw = np.memmap(
        x_path, dtype=np.uint8, mode="r", shape=(labels.size, 3, STL10_SIDE, STL10_SIDE)
    )
    # Column-major per channel: raw[n, c, x, y]; transposing gives (N, row, column, channel).
    images = raw.transpose(0, 3, 2, 1)
    if limit_per_class:
        keep = np.concatenate(
            [np.flatnonzero(labels == c)[:limit_per_class] for c in range(len(STL10_CLASSES))]
        )
        keep.sort()
        images, labels = images[keep], labels[keep]
    return ClassificationDataset("stl10", list(STL10_CLASSES), None, labels.tolist(), images)


def load_classification_prompts(
    dataset: str,
    lang: str,
    data_dir: PathLike | None = None,
    *,
    fix_translations: bool = False,
) -> ClassificationPrompts:
    """uCLIP's zero-shot class prompts for ``"cifar10"`` or ``"stl10"``.

    ``lang`` is ``"en"`` (``"a photo of a {class}."``) or one of cs/fi/hr/hu/ro (uCLIP's
    translations from ``classification/translations_<dataset>.json``). Known wrong translations
    (:data:`KNOWN_TRANSLATION_ISSUES`) are kept and noted unless ``fix_translations=True``,
    which swaps in our corrections.
    """
    classes = {"cifar10": CIFAR10_CLASSES, "stl10": STL10_CLASSES}.get(dataset)
    if classes is None:
        raise UclipError(f"unknown classification data set {dataset!r}: use cifar10 or stl10")
    code = short_code(lang)
    code = {name: iso for iso, name in UCLIP_LANGUAGES.items()}.get(code.lower(), code)
    if code == "en":
        prompts = [ENGLISH_PROMPT_TEMPLATE.format(c) for c in classes]
        return ClassificationPrompts(dataset, "en", list(classes), prompts)
    if code not in UCLIP_LANGUAGES:
        raise unknown_language(f"{dataset} prompt", lang, ["en", *UCLIP_LANGUAGES])
    root = data_root(data_dir, f"{dataset} prompts")
    path = root / "classification" / f"translations_{dataset}.json"
    table = read_json(path, "classification prompts")
    prompts = table.get(UCLIP_LANGUAGES[code]) if isinstance(table, dict) else None
    if not isinstance(prompts, list) or len(prompts) != len(classes):
        raise UclipError(
            f"{path} lacks {len(classes)} {UCLIP_LANGUAGES[code]!r} prompts: restore "
            "it from the data release"
        )
    prompts = list(prompts)
    notes = []
    for index, cls in enumerate(classes):
        issue = KNOWN_TRANSLATION_ISSUES.get((dataset, code, cls))
        if issue is None:
            continue
        if prompts[index] != issue.found:
            notes.append(
                f"known issue for {cls!r} no longer applies: found {prompts[index]!r}, "
                f"expected {issue.found!r}"
            )
        elif fix_translations:
            prompts[index] = issue.corrected
            notes.append(
                f"{cls!r}: replaced {issue.found!r} ({issue.problem}) by our correction "
                f"{issue.corrected!r}"
            )
        else:
            notes.append(
                f"{cls!r}: {issue.found!r} {issue.problem}; fix_translations=True uses "
                f"{issue.corrected!r}"
            )
    with_period = sum(p.rstrip().endswith(".") for p in prompts)
    if 0 < with_period < len(prompts):
        notes.append(f"{with_period} of {len(prompts)} prompts end with a period, the rest do not")
    return ClassificationPrompts(dataset, code, list(classes), prompts, notes)
