"""The search page in a real headless Chromium, driven by keyboard only (issue 7).

Serves the app with uvicorn on a free loopback port and drives Debian's ``/usr/bin/chromium``
through playwright (no ``playwright install``: the system browser is used). Skipped, with the
reason, when either is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from test_serve_api import make_image_folder, make_model
from uclip.serve.app import BackgroundServer, create_app
from uclip.serve.index.build import build_index

CHROMIUM = os.environ.get("UCLIP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install chromium (or set UCLIP_CHROMIUM)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    root = tmp_path_factory.mktemp("browser")
    images = make_image_folder(root)
    model = make_model(identity=True)
    index = build_index(model, images, root / "idx", progress=False)
    with BackgroundServer(create_app(index, model)) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Any, server: BackgroundServer) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.requests_seen = []  # type: ignore[attr-defined]
    page.on("request", lambda request: page.requests_seen.append(request.url))
    page.console_errors = []  # type: ignore[attr-defined]
    page.on(
        "console",
        lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    page.goto(server.url + "/")
    yield page
    context.close()


def _active(page: Any) -> dict[str, str]:
    return page.evaluate(
        "() => ({id: document.activeElement.id, tag: document.activeElement.tagName, "
        "href: document.activeElement.getAttribute('href') || ''})"
    )


def test_keyboard_search_shows_result_thumbnails(page: Any, server: BackgroundServer) -> None:
    assert _active(page)["id"] == "q"  # the search box has focus on load
    banner = page.locator("#banner")
    sync_api.expect(banner).to_contain_text("image-indexed")
    sync_api.expect(banner).to_contain_text("fake-image")

    page.keyboard.type("rojo")
    page.keyboard.press("Enter")
    thumbs = page.locator("#results li a.hit img")
    sync_api.expect(thumbs).to_have_count(12)  # default k=24, clamped to the 12 images
    sync_api.expect(page.locator("#status")).to_contain_text("12 results for “rojo”")

    alts = thumbs.evaluate_all("imgs => imgs.map(i => i.alt)")
    assert alts[0].startswith("Result 1: ") and all(a.split(": ", 1)[1] for a in alts)
    assert all("red" in a for a in alts[:4]), alts  # the red images come first
    # Every thumbnail actually loaded from /images/{id}.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    scores = page.locator("#results .score").all_inner_texts()
    values = [float(s.split()[-1]) for s in scores]
    assert values == sorted(values, reverse=True)

    # Tab moves from the box through the controls into the results: links are focusable.
    for _ in range(10):
        page.keyboard.press("Tab")
        if _active(page)["tag"] == "A" and _active(page)["href"].startswith("/images/"):
            break
    else:
        pytest.fail("no result link was reachable with Tab")

    assert "q=rojo" in page.url  # the search is in the address (shareable, survives reload)
    hosts = {urlsplit(u).netloc for u in page.requests_seen if not u.startswith("data:")}
    assert hosts == {f"{server.host}:{server.port}"}, hosts  # offline: nothing else fetched
    assert page.console_errors == []  # no script error, no Content-Security-Policy violation


def test_non_latin_query_and_empty_query_by_keyboard(page: Any) -> None:
    page.keyboard.type("青")
    page.keyboard.press("Enter")
    thumbs = page.locator("#results img")
    sync_api.expect(thumbs).to_have_count(12)
    assert "blue" in thumbs.first.get_attribute("alt")

    page.locator("#q").fill("   ")
    page.locator("#q").press("Enter")
    status = page.locator("#status")
    sync_api.expect(status).to_contain_text("Type something to search")
    sync_api.expect(thumbs).to_have_count(0)
    assert "error" in (status.get_attribute("class") or "")


def test_server_error_message_is_shown(page: Any, server: BackgroundServer) -> None:
    """A query the server rejects shows its one-line message (here k out of range via the URL)."""
    page.goto(server.url + "/?q=verde&k=100")
    sync_api.expect(page.locator("#results img")).to_have_count(12)
    page.evaluate("document.getElementById('k').add(new Option('500', '500', true, true))")
    page.locator("#q").press("Enter")
    sync_api.expect(page.locator("#status")).to_contain_text("invalid query parameter 'k'")
