"""The steward workbench in a real browser (Debian's chromium driven by playwright): log in, decide
three review groups, find the decisions in the override file, and see the next night's queue
without them."""

from __future__ import annotations

import csv
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import duckdb
import httpx
import pytest
from orchestration_support import EXPORT_DATE  # tests/orchestration_support.py

from pipelines.identify.overrides import load_overrides

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def ensure_chromium() -> Path:
    """Debian's chromium, installed from the distribution when missing (CI reaches Debian's mirror)."""
    if not CHROMIUM.exists() and shutil.which("apt-get"):
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium",
                       shell=True, check=False, capture_output=True, timeout=900)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing and could not be installed with apt-get")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def records_of(warehouse: Path, customer_ids: list[str]) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {r[0] for r in con.execute(
            "select source_record_id from source_records where customer_id in (select unnest(?))",
            [customer_ids]).fetchall()}


def queue_pairs(warehouse: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select source_record_id_l, source_record_id_r from review_queue").fetchall()


@pytest.mark.slow
def test_a_steward_decides_three_groups_and_they_do_not_come_back(server, published, browser, next_night):
    page = browser.new_page()
    page.goto(server.url + "/workbench")
    assert page.url.startswith(server.url + "/workbench/login")  # personal data only after login
    page.fill("#name", "Ann Steward")
    page.fill("#secret", "not the token")
    page.click("#login")
    assert "valid token" in page.text_content(".error")
    page.fill("#name", "Ann Steward")
    page.fill("#secret", server.config.token)
    page.click("#login")
    page.wait_for_selector("#queue")
    assert page.url.rstrip("/").endswith("/workbench")

    # the queue, in impact order; the steward takes the first three groups between two customers
    rows = page.query_selector_all("#queue tbody tr[data-group]")
    assert len(rows) >= 3
    cross = [r for r in rows if not r.query_selector(".tag")][:3]
    assert len(cross) == 3
    groups = [r.get_attribute("data-group") for r in cross]
    decisions = ["must_link", "cannot_link", "not_sure"]
    customers: dict[str, list[str]] = {}
    for group_id, decision in zip(groups, decisions, strict=True):
        page.goto(f"{server.url}/workbench/groups/{group_id}")
        detail = server.client().get(f"/review/groups/{group_id}").json()
        customers[group_id] = [detail["customer_a"], detail["customer_b"]]
        pair = detail["pairs"][0]
        # both records' actual values are on the page, beside Splink's levels and the waterfall
        evidence = page.query_selector(f"#pair-{pair['review_id']} table.evidence")
        text = evidence.inner_text()
        for side in ("left", "right"):
            shown = [str(pair[side][f]) for f in ("given_name", "family_name", "org_name", "birth_date")
                     if pair[side].get(f)]
            assert shown and all(value in text for value in shown), (side, shown)
        assert page.query_selector_all(f"#pair-{pair['review_id']} tr.matched")
        assert page.query_selector(f"#pair-{pair['review_id']} svg.waterfall rect")
        page.check(f"#{decision}")
        page.fill("#reason", f"browser test: {decision.replace('_', ' ')}")
        page.click("#submit")
        assert decision.replace("_", "-") in page.text_content("#done")

    # the override file holds the two decisions, in its own format; 'not sure' is kept beside it
    decided = load_overrides(published.overrides)
    assert sorted(o.decision for o in decided) == ["cannot_link", "must_link"]
    assert {o.decided_by for o in decided} == {"Ann Steward"}
    with (published.overrides.with_name("not_sure.csv")).open(encoding="utf-8") as fh:
        unsure = list(csv.DictReader(fh))
    assert [r["decision"] for r in unsure] == ["not_sure"] and unsure[0]["decided_by"] == "Ann Steward"
    page.goto(server.url + "/workbench")
    still_open = {r.get_attribute("data-group") for r in page.query_selector_all("#queue tbody tr[data-group]")}
    assert groups[0] not in still_open and groups[1] not in still_open and groups[2] in still_open

    # a form without this session's CSRF token is refused, and so is one without a session
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(f"{server.url}/workbench/groups/{groups[2]}/decide", cookies=cookie,
                        data={"decision": "must_link", "reason": "forged", "csrf": "guess"})
    assert forged.status_code == 403
    anonymous = httpx.post(f"{server.url}/workbench/groups/{groups[2]}/decide",
                           data={"decision": "must_link", "reason": "x", "csrf": "x"})
    assert anonymous.status_code == 303 and "/workbench/login" in anonymous.headers["location"]
    assert len(load_overrides(published.overrides)) == 2

    # the next night: the decisions apply, and none of the decided pairs' siblings come back
    sides = {g: [records_of(published.warehouse, [c]) for c in customers[g]] for g in groups}
    old_version = server.client().get("/health").json()["warehouse_version"]
    next_night(published, EXPORT_DATE + timedelta(days=1))
    server.wait_for_version(old_version)
    with duckdb.connect(str(published.warehouse), read_only=True) as con:
        customer_of = dict(con.execute("select source_record_id, customer_id from source_records").fetchall())
    night2 = queue_pairs(published.warehouse)

    def between(group_id: str) -> list[tuple[str, str]]:
        first, second = sides[group_id]
        return [(left, right) for left, right in night2
                if (left in first and right in second) or (left in second and right in first)]

    merged, kept_apart, unsure_group = groups
    assert len({customer_of[r] for side in sides[merged] for r in side}) == 1  # must-link: one now
    assert len({customer_of[r] for side in sides[kept_apart] for r in side}) == 2  # cannot-link: two
    assert between(merged) == [] and between(kept_apart) == []
    assert between(unsure_group)  # 'not sure' is never applied: that group is asked again
    page.goto(server.url + "/workbench")
    assert "not sure (Ann Steward)" in page.inner_text("#queue")
    page.close()
