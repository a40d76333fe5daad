"""Data set loaders on the committed fixtures (a fresh clone needs nothing else), plus checks on
the full data in ../shared/data when it is there."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uclip.data.classification import (
    CIFAR10_CLASSES,
    STL10_CLASSES,
    load_cifar10,
    load_classification_prompts,
    load_stl10,
)
from uclip.data.coco import load_coco5k
from uclip.data.flickr30k import load_flickr30k
from uclip.data.flores200 import available_flores_codes, load_flores
from uclip.data.languages import XM3600_LANGUAGES
from uclip.data.records import RetrievalDataset
from uclip.data.text_quality import find_repetition_loops, has_repetition_loop, normalize_romanian
from uclip.data.xm3600 import available_xm3600_languages, load_xm3600
from uclip.errors import UclipError
from uclip.paths import default_data_dir

FIXTURES_DIR = Path(__file__).parent / "fixtures"
DATA = FIXTURES_DIR / "data"
CIFAR_IMAGES = FIXTURES_DIR / "images" / "cifar10"


def _full_data_dir() -> Path | None:
    path = default_data_dir()
    if path is None or len(list((path / "xm3600").glob("captions_*.json"))) != 36:
        return None
    return path


FULL = _full_data_dir()
needs_full_data = pytest.mark.skipif(
    FULL is None, reason="full data set not found: set UCLIP_DATA or put it in ../shared/data"
)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def _write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (4, 4), (255, 0, 0)).save(folder / name.rsplit("/", 1)[-1])


# ---------------------------------------------------------------------------------------------
# Text helpers


def test_normalize_romanian() -> None:
    assert normalize_romanian("şi ţară ŞI ŢARĂ") == "și țară ȘI ȚARĂ"
    assert normalize_romanian("s\u0327i t\u0327ara") == "și țara"  # decomposed cedilla
    assert normalize_romanian("și țară") == "și țară"


def test_find_repetition_loops() -> None:
    texts = [
        "A man rides a bike.",
        "Nuori nuori nuori nuori nuori",  # one word x5, case-folded
        "Un fel de fel de fel de fel de fel de",  # a phrase
        "medvecskecskecskecskecske",  # a sub-word unit
        "- - - - - - - - - -",
        "hahahaha",  # too short to be a loop
        "Wait......",
        "word word word",  # only three times
        " " * 30,  # whitespace only
    ]
    assert find_repetition_loops(texts) == [1, 2, 3, 4]
    assert has_repetition_loop("pirítós pirítós pirítós pirítós")
    assert find_repetition_loops([]) == []


# ---------------------------------------------------------------------------------------------
# XM3600


def test_xm3600_fixture_counts_and_alignment() -> None:
    en = load_xm3600("en", DATA)
    cs = load_xm3600("cs", DATA)
    ja = load_xm3600("jpn_Jpan", DATA)  # FLORES code accepted
    assert (cs.num_images, cs.num_captions) == (20, 20)
    assert en.image_ids == cs.image_ids == ja.image_ids
    assert cs.image_ids[0] == "000411001ff7dd4f.jpg"
    assert cs.captions[0] == "Kohout a slepice v trávě"
    assert cs.caption_to_image == cs.first_caption_index == list(range(20))
    assert cs.english_captions == en.captions  # captions_en is the English caption of the image
    assert ja.lang == "ja" and cs.image_paths is None
    # Rows 18 and 19 of the fixture share the Czech caption "Červeně kvetoucí rostlina".
    assert cs.captions[18] == cs.captions[19]
    assert any("2 of 20 captions share their exact text" in note for note in cs.notes)


def test_xm3600_unknown_language_lists_available() -> None:
    with pytest.raises(UclipError) as exc:
        load_xm3600("xx", DATA)
    message = _one_line(exc)
    assert "unknown XM3600 language 'xx'" in message
    assert "available cs, en, ja" in message


def test_xm3600_missing_images_counted_in_one_line(tmp_path: Path) -> None:
    names = load_xm3600("en", DATA).image_ids
    _write_images(tmp_path, names[3:])
    with pytest.raises(UclipError) as exc:
        load_xm3600("cs", DATA, images_dir=tmp_path)
    message = _one_line(exc)
    assert message.startswith(f"3 of 20 XM3600 images are missing under {tmp_path}")
    assert f"(e.g. {names[0]})" in message
    assert "pass --images DIR with the XM3600 images" in message

    _write_images(tmp_path, names[:3])
    data = load_xm3600("cs", DATA, images_dir=tmp_path)
    assert data.image_paths == [tmp_path / n for n in names]

    with pytest.raises(UclipError, match=r"images folder .* does not exist"):
        load_xm3600("cs", DATA, images_dir=tmp_path / "nope")


def test_xm3600_images_in_subfolder(tmp_path: Path) -> None:
    names = load_xm3600("en", DATA).image_ids
    _write_images(tmp_path / "images", names)
    data = load_xm3600("en", DATA, images_dir=tmp_path)
    assert data.image_paths[0] == tmp_path / "images" / names[0]


def test_empty_data_set_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "xm3600").mkdir()
    (tmp_path / "xm3600" / "captions_cs.json").write_text("[]", encoding="utf-8")
    with pytest.raises(UclipError, match="holds no records: the data set is empty"):
        load_xm3600("cs", tmp_path)
    with pytest.raises(UclipError, match="is empty"):
        RetrievalDataset("x", "en", [], [], [], [])
    with pytest.raises(UclipError, match="no XM3600 captions under"):
        load_xm3600("cs", tmp_path / "xm3600")


def test_malformed_record_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "xm3600").mkdir()
    record = {"filename": "a.jpg", "captions_en": "x"}
    (tmp_path / "xm3600" / "captions_cs.json").write_text(json.dumps([record]), encoding="utf-8")
    with pytest.raises(UclipError, match="record 0 lacks a str 'captions_translated'"):
        load_xm3600("cs", tmp_path)


def test_first_captions_only_view() -> None:
    coco = load_coco5k("en", DATA)
    first = coco.first_captions_only()
    assert first.num_captions == first.num_images == 20
    assert first.captions == [coco.captions[i] for i in coco.first_caption_index]
    assert first.english_captions == first.captions


# ---------------------------------------------------------------------------------------------
# COCO


def test_coco_fixture_english_and_translations() -> None:
    en = load_coco5k("en", DATA)
    assert (en.num_images, en.num_captions) == (20, 100)
    assert en.caption_to_image[:6] == [0, 0, 0, 0, 0, 1]
    assert en.first_caption_index == list(range(0, 100, 5))
    assert en.image_ids[0] == "COCO_val2014_000000391895.jpg"
    assert en.captions[0] == "A man with a red helmet on a small moped on a dirt road ."
    one = load_coco5k("en", DATA, captions_per_image=1)
    assert one.captions == [en.captions[i] for i in en.first_caption_index]

    for lang, loop_image in [("cs", "268375"), ("fi", "448365"), ("hu", "117089")]:
        data = load_coco5k(lang, DATA)
        assert data.image_ids == en.image_ids
        assert data.num_captions == 20
        loops = [n for n in data.notes if "repetition loops" in n]
        assert len(loops) == 1 and loops[0].startswith("1 of 20 captions"), data.notes
        assert loop_image in loops[0]
    hr = load_coco5k("hr", DATA)
    assert not any("repetition" in n for n in hr.notes)
    fi = load_coco5k("fi", DATA)
    raw = json.loads((DATA / "coco" / "captions_fi.json").read_text("utf-8"))
    assert fi.english_captions == [r["captions_en"] for r in raw]
    assert find_repetition_loops(fi.captions) == [17]  # fixture row of image 448365


def test_coco_romanian_letter_forms_kept_or_normalized() -> None:
    ro = load_coco5k("ro", DATA)
    assert any("ş" in c or "ţ" in c for c in ro.captions)  # kept as in the source by default
    assert any("mixes letter forms" in n for n in ro.notes)
    fixed = load_coco5k("ro", DATA, normalize=True)
    assert not any(ch in c for c in fixed.captions for ch in "şţŞŢ")
    assert fixed.captions == [normalize_romanian(c) for c in ro.captions]
    assert not any("mixes letter forms" in n for n in fixed.notes)


def test_coco_id_mismatch_and_reorder(tmp_path: Path) -> None:
    shutil.copytree(DATA / "coco", tmp_path / "coco")
    path = tmp_path / "coco" / "captions_fi.json"
    records = json.loads(path.read_text("utf-8"))
    path.write_text(json.dumps(records[::-1], ensure_ascii=False), encoding="utf-8")
    reordered = load_coco5k("fi", tmp_path)
    assert reordered.image_ids == load_coco5k("en", tmp_path).image_ids
    assert reordered.captions == load_coco5k("fi", DATA).captions
    assert any("reordered" in n for n in reordered.notes)

    records[4]["filename"] = "COCO_val2014_000000000001.jpg"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UclipError) as exc:
        load_coco5k("fi", tmp_path)
    message = _one_line(exc)
    assert "image ids differ from coco_karpathy_test5k_en.jsonl" in message
    assert "1 only in captions_fi.json" in message and "COCO_val2014_000000000001.jpg" in message


def test_coco_errors_and_2017_image_names(tmp_path: Path) -> None:
    with pytest.raises(UclipError, match="unknown COCO-5k language 'de': available cs, en, fi"):
        load_coco5k("de", DATA)
    with pytest.raises(UclipError, match="1 caption\\(s\\) per image, not 5"):
        load_coco5k("fi", DATA, captions_per_image=5)
    names = load_coco5k("en", DATA).image_ids
    short = [n.rsplit("_", 1)[1] for n in names]  # COCO 2017 naming: <12-digit id>.jpg
    _write_images(tmp_path / "val2017", short[:10])
    _write_images(tmp_path / "train2017", short[10:])
    data = load_coco5k("cs", DATA, images_dir=tmp_path)
    assert data.image_paths[0] == tmp_path / "val2017" / short[0]
    assert data.image_paths[-1] == tmp_path / "train2017" / short[-1]


# ---------------------------------------------------------------------------------------------
# Flickr30k


def test_flickr_fixture_jsonl_languages() -> None:
    en = load_flickr30k("en", DATA)
    assert (en.num_images, en.num_captions) == (20, 100)
    assert en.image_ids[0] == "1007129816.jpg"
    first = load_flickr30k("en", DATA, captions_per_image=1)
    assert first.captions == [en.captions[i] for i in en.first_caption_index]
    cs = load_flickr30k("cs", DATA)
    assert cs.num_captions == 20 and cs.image_ids == en.image_ids
    assert cs.captions[0] == "Muž s propíchnutými ušima má brýle a oranžový klobouk."
    assert cs.english_captions == first.captions
    ro = load_flickr30k("ro", DATA)
    assert any("mixes letter forms" in n for n in ro.notes)


def test_flickr_fixture_flores_codes_from_tar() -> None:
    ces = load_flickr30k("ces_Latn", DATA)
    cs = load_flickr30k("cs", DATA)
    assert ces.lang == "ces_Latn" and ces.image_ids == cs.image_ids
    assert ces.captions == cs.captions  # the jsonl's cs is NLLB-CLIP's ces_Latn
    assert ces.english_captions == cs.english_captions
    ja = load_flickr30k("ja", DATA)  # XM3600 code -> jpn_Jpan
    assert ja.lang == "jpn_Jpan" and ja.num_captions == 20
    eng = load_flickr30k("eng_Latn", DATA)
    assert eng.captions == load_flickr30k("en", DATA, captions_per_image=1).captions
    with pytest.raises(UclipError) as exc:
        load_flickr30k("jpn_Japn", DATA)
    message = _one_line(exc)
    assert "unknown Flickr30k-200 language code 'jpn_Japn'" in message
    assert "close matches: jpn_Jpan" in message


def test_flickr_missing_images(tmp_path: Path) -> None:
    names = load_flickr30k("en", DATA).image_ids
    _write_images(tmp_path / "flickr30k-images", names[:-1])
    with pytest.raises(UclipError, match="1 of 20 Flickr30k images are missing"):
        load_flickr30k("en", DATA, images_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# FLORES-200


def test_flores_fixture_codes() -> None:
    bitext = load_flores("cs", data_dir=DATA)
    assert (bitext.src_lang, bitext.tgt_lang, len(bitext)) == ("ces_Latn", "eng_Latn", 30)
    eng = (DATA / "flores200" / "eng_Latn.devtest").read_text("utf-8").splitlines()
    assert bitext.tgt == eng
    ja = load_flores("ja", "ces_Latn", DATA)
    assert (ja.src_lang, ja.tgt_lang) == ("jpn_Jpan", "ces_Latn") and ja.tgt == bitext.src
    assert load_flores("CES_LATN", data_dir=DATA).src_lang == "ces_Latn"


def test_flores_unknown_code_suggests_close_matches() -> None:
    with pytest.raises(UclipError) as exc:
        load_flores("ces_Latin", data_dir=DATA)
    message = _one_line(exc)
    assert "unknown FLORES-200 language code 'ces_Latin'" in message
    assert "close matches: ces_Latn" in message


# ---------------------------------------------------------------------------------------------
# Classification prompts


def test_classification_prompts_and_known_issues() -> None:
    en = load_classification_prompts("cifar10", "en", DATA)
    assert en.prompts[3] == "a photo of a cat." and en.class_names_en == list(CIFAR10_CLASSES)
    fi = load_classification_prompts("cifar10", "fi", DATA)
    assert fi.prompts[4] == "Eläimen kuva"  # kept as in the source by default
    assert any("'deer'" in n and "fix_translations=True" in n for n in fi.notes)
    fixed = load_classification_prompts("cifar10", "finnish", DATA, fix_translations=True)
    assert fixed.lang == "fi" and fixed.prompts[4] == "Kuva peurasta"
    assert fixed.prompts[:4] == fi.prompts[:4] and fixed.prompts[5:] == fi.prompts[5:]
    hr = load_classification_prompts("cifar10", "hr", DATA, fix_translations=True)
    assert hr.prompts[6] == "Fotografija žabe"
    stl_fi = load_classification_prompts("stl10", "fi", DATA, fix_translations=True)
    assert stl_fi.prompts[4] == "Kuva peurasta" and stl_fi.class_names_en[2] == "car"
    stl_hr = load_classification_prompts("stl10", "hr", DATA)
    assert not any("frog" in n for n in stl_hr.notes)
    with pytest.raises(UclipError, match="unknown classification data set 'mnist'"):
        load_classification_prompts("mnist", "en", DATA)
    with pytest.raises(UclipError, match="unknown cifar10 prompt language 'de'"):
        load_classification_prompts("cifar10", "de", DATA)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 and STL-10


def test_cifar10_class_folders() -> None:
    data = load_cifar10(images_dir=CIFAR_IMAGES)
    assert len(data) == 30
    assert data.labels == [c for c in range(10) for _ in range(3)]
    assert data.image_paths[0].parent.name == "airplane"
    image = data.load_image(0)
    assert image.mode == "RGB" and image.size == (32, 32)
    limited = load_cifar10(images_dir=CIFAR_IMAGES, limit_per_class=2)
    assert len(limited) == 20 and limited.image_paths[:2] == data.image_paths[:2]


def test_cifar10_missing_class_folder(tmp_path: Path) -> None:
    shutil.copytree(CIFAR_IMAGES, tmp_path / "cifar")
    shutil.rmtree(tmp_path / "cifar" / "frog")
    shutil.rmtree(tmp_path / "cifar" / "ship")
    with pytest.raises(UclipError) as exc:
        load_cifar10(images_dir=tmp_path / "cifar")
    assert _one_line(exc).startswith("2 of 10 CIFAR-10 class folders are missing")


def _cifar_tar(path: Path, extra: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for cls in sorted(p.name for p in CIFAR_IMAGES.iterdir()):
            for image in sorted((CIFAR_IMAGES / cls).iterdir()):
                tar.add(image, arcname=f"test/{cls}/{image.name}")
        if extra:
            info = tarfile.TarInfo(extra)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))


def test_cifar10_archive_extracted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, cache = tmp_path / "data", tmp_path / "cache"
    _cifar_tar(data_dir / "images" / "cifar10_test_jpg.tar.gz")
    data = load_cifar10(data_dir, cache_dir=cache)
    assert len(data) == 30 and data.labels[-1] == 9
    assert data.image_paths[0].is_relative_to(cache)
    assert [p.name for p in cache.iterdir()] == [data.image_paths[0].parents[2].name]

    def no_reopen(*args: object, **kwargs: object) -> None:
        raise AssertionError("the archive was extracted twice")

    monkeypatch.setattr(tarfile, "open", no_reopen)
    assert load_cifar10(data_dir, cache_dir=cache).image_paths == data.image_paths


def test_unsafe_archive_is_refused(tmp_path: Path) -> None:
    _cifar_tar(tmp_path / "data" / "images" / "cifar10_test_jpg.tar.gz", extra="../evil.txt")
    with pytest.raises(UclipError, match=r"unsafe entry '\.\./evil\.txt'"):
        load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "cache").iterdir()) == []  # the temporary folder is cleaned up


def test_stl10_binary_layout_is_column_major(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    raw = np.zeros((3, 3, 96, 96), dtype=np.uint8)  # (N, channel, column, row) as stored
    raw[0, 0, 0, :] = 255  # image 0: the first 96 bytes (red, column x=0) are set
    raw[1, 2, :, 5] = 200  # image 1: blue row y=5
    raw.tofile(folder / "test_X.bin")
    np.array([1, 10, 3], dtype=np.uint8).tofile(folder / "test_y.bin")
    data = load_stl10(tmp_path)
    assert data.labels == [0, 9, 2] and data.image_paths is None
    first = np.asarray(data.load_image(0))
    assert first.shape == (96, 96, 3)
    assert (
        (first[:, 0, 0] == 255).all() and first[:, 1:, :].max() == 0 and first[:, 0, 1:].max() == 0
    )
    second = np.asarray(data.load_image(1))
    assert (second[5, :, 2] == 200).all() and second.sum() == 200 * 96
    limited = load_stl10(folder, limit_per_class=1)
    assert limited.labels == [0, 9, 2]

    (folder / "test_X.bin").write_bytes(b"\0" * 10)
    with pytest.raises(UclipError, match="holds 10 bytes, expected 3 x 27648"):
        load_stl10(tmp_path)


def test_stl10_not_shipped_and_class_folders(tmp_path: Path) -> None:
    with pytest.raises(UclipError, match="STL-10 is not shipped with uclip: pass --images DIR"):
        load_stl10(None)
    with pytest.raises(UclipError, match="10 of 10 STL-10 class folders are missing"):
        load_stl10(tmp_path)
    for cls in STL10_CLASSES:
        _write_images(tmp_path / "test" / cls, ["a.png", "b.png"])
    data = load_stl10(tmp_path, limit_per_class=1)
    assert len(data) == 10 and data.class_names_en[7] == "monkey"


# ---------------------------------------------------------------------------------------------
# The full data set (../shared/data), when present


@needs_full_data
def test_full_xm3600_36_languages_share_file_names() -> None:
    en = load_xm3600("en", FULL)
    assert len(available_xm3600_languages(FULL)) == 36
    for lang in XM3600_LANGUAGES:
        data = load_xm3600(lang, FULL)
        assert (data.num_images, data.num_captions) == (3600, 3600), lang
        assert data.image_ids == en.image_ids, lang
        assert data.english_captions == en.captions, lang


@needs_full_data
def test_full_coco_5k() -> None:
    en = load_coco5k("en", FULL)
    assert (en.num_images, en.num_captions) == (5000, 25000)
    expected_loops = {"cs": 1, "fi": 4, "hr": 0, "hu": 2, "ro": 1}  # MANIFEST.md
    for lang, loops in expected_loops.items():
        data = load_coco5k(lang, FULL)
        assert data.image_ids == en.image_ids and data.num_captions == 5000
        assert len(find_repetition_loops(data.captions)) == loops, lang
    assert not find_repetition_loops(en.captions)


@needs_full_data
def test_full_flickr_1k_and_flores() -> None:
    en = load_flickr30k("en", FULL)
    assert (en.num_images, en.num_captions) == (1000, 5000)
    deu = load_flickr30k("de", FULL)
    assert deu.lang == "deu_Latn" and deu.image_ids == en.image_ids and deu.num_captions == 1000
    assert load_flickr30k("ro", FULL).num_captions == 1000
    for code in ("eng_Latn", "ces_Latn", "quz", "zh", "cmn_Hant"):
        bitext = load_flores(code, data_dir=FULL)
        assert len(bitext) == 1012, code
    assert load_flores("quz", data_dir=FULL).src_lang == "quy_Latn"
    assert len(available_flores_codes(FULL)) == 204


@pytest.mark.slow
@needs_full_data
def test_full_cifar10_archive(tmp_path: Path) -> None:
    data = load_cifar10(FULL, cache_dir=tmp_path, limit_per_class=1000)
    assert len(data) == 10000
    assert np.bincount(data.labels).tolist() == [1000] * 10
