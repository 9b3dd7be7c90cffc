"""The ``aac`` connection form as a user meets it: Airflow's own UI in headless Chromium.

One api-server and one browser serve the module (about a minute, most of it the
api-server starting). Tokens come from the simulator, are typed into password inputs
and never printed; the screenshot in the docs shows them masked. To renew that
screenshot, run this module with AAC_TEST_UPDATE_SCREENSHOT=1.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aac.core.token_state import MAINTAINED_KEYS, fingerprint, utc_iso
from airflow_provider_aac.get_provider_info import CONN_FIELDS
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowHome, ApiServer, start_api_server
from tests.support.airflow_home import minted_aac_extra
from tests.support.requirements import require_postgres, skip_or_fail_without
from tests.support.spec_summary import SPEC_COMPLETE

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "connection-form.png"
UPDATE_SCREENSHOT = "AAC_TEST_UPDATE_SCREENSHOT"
UI_TIMEOUT_MS = 30_000
TYPE_NAME = "Alteryx Analytics Cloud"


def _browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is not installed (pip install -e '.[test]')"
    if shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[AirflowHome, ApiServer, AACSimulator]]:
    skip_or_fail_without(
        _browser_missing(), in_ci=".ci/run installs chromium and the test extra has playwright"
    )
    require_postgres()
    with (
        AirflowHome(backend="postgres") as home,
        AACSimulator(access_ttl=300.0, run_duration=1.0) as simulator,
    ):
        home.migrate()
        server = start_api_server(home)
        try:
            yield home, server, simulator
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser(site: tuple[AirflowHome, ApiServer, AACSimulator]) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(site: tuple[AirflowHome, ApiServer, AACSimulator], browser: Browser) -> Iterator[Page]:
    """A logged-in page on the connections list (SimpleAuthManager's JWT in its ``_token`` cookie)."""
    _, server, _ = site
    context = browser.new_context(viewport={"width": 1280, "height": 1800})
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.add_cookies([{"name": "_token", "value": server.api_token(), "url": server.base_url}])
    page = context.new_page()
    page.goto(f"{server.base_url}/connections")
    try:
        yield page
    finally:
        context.close()


def _choose_type(page: Page) -> Locator:
    from playwright.sync_api import expect

    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    combo = dialog.get_by_role("combobox").first
    combo.focus()
    combo.fill("Alteryx")
    option = page.get_by_role("option", name=TYPE_NAME)
    expect(option).to_be_visible()
    option.click()
    return dialog


def _open_section(dialog: Locator, title: str) -> None:
    """Open one of the form's sections (opening one closes the others)."""
    dialog.get_by_role("button", name=title, exact=True).click()


def _row(page: Page, conn_id: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=conn_id, exact=True))


def _test_button_answer(page: Page, conn_id: str) -> str:
    """Press the row's Test button; the toast's text."""
    from playwright.sync_api import expect

    _row(page, conn_id).get_by_role("button", name="Test Connection").click()
    toast = page.get_by_text(f"Connection {conn_id!r}")
    expect(toast).to_be_visible()
    return toast.inner_text()


def _test_body(server: ApiServer, conn_id: str) -> dict[str, Any]:
    """What the UI posts to test a stored connection: its fields as listed (secrets masked)."""
    listed = server.request_ok("GET", f"/api/v2/connections/{conn_id}")
    return {k: listed[k] for k in ("connection_id", "conn_type", "host", "port", "extra")}


def test_new_connection_form_labels_masks_and_saves(
    site: tuple[AirflowHome, ApiServer, AACSimulator], page: Page
) -> None:
    from playwright.sync_api import expect

    home, server, simulator = site
    conn_id = "aac_default"
    extra = minted_aac_extra(simulator)
    dialog = _choose_type(page)
    dialog.locator("input[name=connection_id]").fill(conn_id)
    expect(dialog.get_by_text("API base URL (required)", exact=True)).to_be_visible()
    host = dialog.locator("input[name=host]")
    assert host.get_attribute("placeholder") == "https://us1.alteryxcloud.com"
    host.fill(simulator.base_url)

    _open_section(dialog, "Extra Fields")
    expect(dialog.locator("#element_access_token")).to_be_visible()
    labels = {" ".join(text.split()) for text in dialog.locator("label").all_inner_texts()}
    for key, field in CONN_FIELDS.items():
        if key not in MAINTAINED_KEYS:
            required = key in ("access_token", "refresh_token")
            assert (f"{field['label']} *" if required else field["label"]) in labels
            expect(dialog.get_by_text(field["description"])).to_be_visible()
    for key in ("access_token", "refresh_token"):
        assert dialog.locator(f"#element_{key}").get_attribute("type") == "password"
    for key in MAINTAINED_KEYS:
        assert dialog.locator(f"#element_{key}").get_attribute("type") == "hidden"
        expect(dialog.get_by_text(key)).to_have_count(0)

    mode = dialog.locator("#element_refresh_mode")
    expect(mode).to_contain_text("auto (default)")
    mode.click()
    options = [text.strip() for text in page.get_by_role("option").all_inner_texts()]
    assert len(options) == 4 and options[0].startswith("auto (default)")
    assert not any(re.fullmatch(r"(?i)null|none", text) for text in options)
    page.get_by_role("option").first.click()
    expect(mode).to_contain_text("auto (default)")

    dialog.locator("#element_access_token").fill(extra["access_token"])
    dialog.locator("#element_refresh_token").fill(extra["refresh_token"])
    screenshot = home.path / "connection-form.png"
    dialog.screenshot(path=str(screenshot))
    if os.environ.get(UPDATE_SCREENSHOT) == "1":
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()

    stored = home.get_connection_extra(conn_id)
    assert (stored["access_token"], stored["refresh_token"]) == (
        extra["access_token"],
        extra["refresh_token"],
    )
    assert stored.get("refresh_mode") == "auto"
    # The list's Test button cannot test it: Airflow 3.3.2 sends port 0 for a connection
    # without one and refuses the test (see docs/connection.md); the API tests it.
    tested = server.request_ok("POST", "/api/v2/connections/test", json=_test_body(server, conn_id))
    assert tested == {
        "status": True,
        "message": f"Connection {conn_id!r}: Connected to AAC as sim@example.com. {SPEC_COMPLETE}",
    }


def test_saving_an_edited_connection_keeps_the_provider_keys(
    site: tuple[AirflowHome, ApiServer, AACSimulator], page: Page
) -> None:
    from playwright.sync_api import expect

    home, server, simulator = site
    conn_id = "aac_from_the_cli"
    in_flight = {"attempt_id": "a1", "by": "worker-1", "started_at": utc_iso(time.time())}
    server.add_aac_connection(
        conn_id, simulator, generation=3, refreshed_by="worker-1", refresh_in_flight=in_flight, min_ttl=120
    )
    before = home.get_connection_extra(conn_id)

    _row(page, conn_id).get_by_role("button", name="Edit Connection").click()
    dialog = page.get_by_role("dialog")
    _open_section(dialog, "Extra Fields")
    expect(dialog.get_by_text(CONN_FIELDS["min_ttl"]["label"], exact=True)).to_be_visible()
    for key in ("generation", "refreshed_by", "refresh_in_flight"):
        assert dialog.locator(f"#element_{key}").get_attribute("type") == "hidden"
    expect(dialog.get_by_role("spinbutton")).to_have_count(1)  # min_ttl, not the generation
    _open_section(dialog, "Standard Fields")
    dialog.locator("textarea[name=description]").fill("edited in the browser")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()

    assert home.get_connection_extra(conn_id) == before
    assert home.query("SELECT description FROM connection WHERE conn_id = %s", (conn_id,)) == [
        ("edited in the browser",)
    ]


def test_the_test_button_names_the_users_connection_and_spends_nothing(
    site: tuple[AirflowHome, ApiServer, AACSimulator], page: Page
) -> None:
    _, server, simulator = site
    port = int(simulator.base_url.rsplit(":", 1)[1])
    fresh, due = "aac_fresh", "aac_due_for_refresh"
    server.add_connection(fresh, "aac", host="http://127.0.0.1", port=port, extra=minted_aac_extra(simulator))
    extra: dict[str, Any] = minted_aac_extra(simulator)
    # Recorded as expired a minute ago: a use must refresh first.
    extra.update(
        access_expires_at=utc_iso(time.time() - 60), access_fingerprint=fingerprint(extra["access_token"])
    )
    server.add_connection(due, "aac", host="http://127.0.0.1", port=port, extra=extra)
    page.reload()
    spent_before = simulator.stats()["token_requests"]

    assert f"Connection {fresh!r}: Connected to AAC as sim@example.com." in _test_button_answer(page, fresh)
    answer = _test_button_answer(page, due)

    assert "temporary copy" in answer and "Nothing was spent" in answer
    assert simulator.stats()["token_requests"] == spent_before
