"""The offline search demo's image folder: real COCO photos and CIFAR-10 images with their text.

No real image tower exists offline, so the demo index is caption-indexed: each image is found
through its own text — its COCO captions where the data has them, "a photo of a <class>" for
CIFAR-10 images — encoded by the anchor tower and f_C.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from uclip.errors import UclipError

CIFAR_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def _extract(tar: tarfile.TarFile, members: set[str], dest: Path, tar_path: Path) -> None:
    for member in tar.getmembers():
        if member.name in members and member.isfile():
            target = dest / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = tar.extractfile(member)
            if fh is None:
                raise UclipError(f"cannot read {member.name} from {tar_path}")
            target.write_bytes(fh.read())


def _cifar_members(tar: tarfile.TarFile, per_class: int) -> dict[str, str]:
    """The first ``per_class`` images of each class in the archive (``test/<class>/NNNN.jpg``),
    as ``{member: class}``; raises if a class holds fewer, naming the most there is."""
    by_class: dict[str, list[str]] = {c: [] for c in CIFAR_CLASSES}
    for member in tar.getmembers():
        parts = member.name.split("/")
        if member.isfile() and len(parts) == 3 and parts[1] in by_class:
            by_class[parts[1]].append(member.name)
    most = min(len(names) for names in by_class.values())
    if per_class > most:
        raise UclipError(
            f"--cifar-per-class {per_class} is more than the CIFAR-10 archive holds: pass at "
            f"most {most} (images per class)"
        )
    return {name: c for c, names in by_class.items() for name in sorted(names)[:per_class]}


def prepare_demo(data_dir: Path, out: Path, cifar_per_class: int = 10) -> tuple[Path, Path]:
    """Write ``out/images/`` and ``out/captions.json``; returns both paths.

    ``cifar_per_class``: CIFAR-10 test images per class, 0 to what the archive holds (1000)."""
    if isinstance(cifar_per_class, bool) or not isinstance(cifar_per_class, int):
        raise UclipError(f"cifar_per_class must be an integer, got {cifar_per_class!r}")
    if cifar_per_class < 0:
        raise UclipError(f"--cifar-per-class must be 0 or more, got {cifar_per_class}")
    images_dir = data_dir / "images"
    coco_tar, cifar_tar = (
        images_dir / "coco_mini_images.tar.gz",
        images_dir / "cifar10_test_jpg.tar.gz",
    )
    for path in (coco_tar, cifar_tar, images_dir / "coco_mini_captions.jsonl"):
        if not path.is_file():
            raise UclipError(f"missing {path}: pass --data-dir with the project's data (images/)")
    # The count is checked against the archive before anything is written.
    with tarfile.open(cifar_tar) as tar:
        cifar = _cifar_members(tar, cifar_per_class)
        records = [
            json.loads(line)
            for line in (images_dir / "coco_mini_captions.jsonl").read_text().splitlines()
            if line.strip()
        ]
        captions: dict[str, list[str]] = {
            f"coco/{r['file_name']}": r["captions"] for r in records if r.get("captions")
        }
        dest = out / "images"
        coco_dest = dest / "coco"
        coco_dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(coco_tar) as coco:
            _extract(coco, {k.removeprefix("coco/") for k in captions}, coco_dest, coco_tar)
        cifar_dest = dest / "cifar10"
        _extract(tar, set(cifar), cifar_dest, cifar_tar)
    for member, cls in cifar.items():
        if (cifar_dest / member).is_file():
            captions[f"cifar10/{member}"] = [f"a photo of a {cls}"]
    captions_path = out / "captions.json"
    captions_path.write_text(json.dumps(captions, indent=1, ensure_ascii=False))
    return dest, captions_path
