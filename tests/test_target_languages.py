"""The paper's five target languages and English's two codes have one home,
``uclip.data.languages``: no other source file spells them out as a literal (checked on the AST of
src/, benchmarks/ and scripts/)."""

from __future__ import annotations

import ast
from pathlib import Path

from uclip.data.languages import ENGLISH_CODES, TARGET_LANGUAGES, XM3600_TO_FLORES

REPO = Path(__file__).resolve().parents[1]
HOME = REPO / "src" / "uclip" / "data" / "languages.py"
TARGETS = [set(TARGET_LANGUAGES), {XM3600_TO_FLORES[lang] for lang in TARGET_LANGUAGES}]
# Still spelled out in files another change is rewriting (issue 21); each goes when it imports
# TARGET_LANGUAGES / ENGLISH_CODES.
PENDING = {
    "src/uclip/app/ablate.py",
    "src/uclip/app/commands/eval.py",
    "src/uclip/app/clt.py",
    "src/uclip/app/quickstart.py",
    "src/uclip/eval/evaluators.py",
}


def spelled_out(source: str) -> list[str]:
    """Line numbers and kinds of tuple/list/set literals holding all five target languages (either
    code set) or both English codes."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            strings = {
                e.value
                for e in node.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            }
            if any(target <= strings for target in TARGETS):
                found.append(f"{node.lineno}: the five target languages")
            if strings >= ENGLISH_CODES:
                found.append(f"{node.lineno}: English's codes")
    return found


def test_the_check_sees_a_literal() -> None:
    assert spelled_out('LANGS = ("cs", "fi", "hr", "hu", "ro", "ja")\n')
    assert spelled_out('x = ["ces_Latn", "fin_Latn", "hrv_Latn", "hun_Latn", "ron_Latn"]\n')
    assert spelled_out('english = lang in {"en", "eng_Latn"}\n')
    assert not spelled_out('LANGS = ("cs", "fi", "hr", "hu")\n')


def test_one_home_for_the_target_languages_and_english_codes() -> None:
    assert TARGET_LANGUAGES == ("cs", "fi", "hr", "hu", "ro")
    problems = []
    for folder in ("src", "benchmarks", "scripts"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if path == HOME or rel in PENDING:
                continue
            problems += [f"{rel}:{hit}" for hit in spelled_out(path.read_text(encoding="utf-8"))]
    assert not problems, "import them from uclip.data.languages:\n" + "\n".join(problems)
    fixed = [rel for rel in sorted(PENDING) if not spelled_out((REPO / rel).read_text("utf-8"))]
    assert not fixed, f"no longer spelled out, take them off PENDING: {fixed}"
