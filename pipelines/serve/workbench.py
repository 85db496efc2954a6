"""The steward workbench: server-rendered pages (Jinja2) over the same queue functions as the API.

Personal data only after a login (the service token or `UCV_STEWARD_PASSWORD`, with the steward's
name for `decided_by`); the session is an opaque random cookie (HttpOnly, SameSite=Strict) and every
form carries that session's CSRF token. Plain HTML forms: no script is needed, none is loaded.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from pipelines.serve.config import ServeConfig
from pipelines.serve.problems import Problem
from pipelines.serve.warehouse import WarehouseHolder

HERE = Path(__file__).parent
COOKIE = "ucv_session"
SESSION_SECONDS = 8 * 3600
PAGE_SIZE = 25


@dataclass
class Session:
    steward: str
    csrf: str
    expires: float


class Sessions:
    """Sessions in memory: a restart logs stewards out, which is the safe direction."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, steward: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(steward, secrets.token_urlsafe(32), time.monotonic() + SESSION_SECONDS)
        with self._lock:
            self._by_id = {k: v for k, v in self._by_id.items() if v.expires > time.monotonic()}
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._by_id.get(sid)
        return session if session and session.expires > time.monotonic() else None

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


def install(app: FastAPI, config: ServeConfig, holder: WarehouseHolder) -> None:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["show"] = show
    sessions = Sessions()
    app.state.sessions = sessions
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page(request: Request, name: str, http_status: int = 200, **context) -> HTMLResponse:
        response = templates.TemplateResponse(request, name, context, status_code=http_status)
        response.headers["Cache-Control"] = "no-store"  # personal data: not in any cache
        response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def steward(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def to_login(request: Request) -> RedirectResponse:
        return RedirectResponse(f"/workbench/login?next={quote(request.url.path)}", status_code=303)

    def check_secret(secret: str) -> bool:
        secret_b = secret.encode()
        ok = secrets.compare_digest(secret_b, config.token.encode())
        if config.steward_password:
            ok = secrets.compare_digest(secret_b, config.steward_password.encode()) or ok
        return ok

    @app.get("/workbench/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/workbench"):
        return page(request, "login.html", next=_safe_next(next), error=None)

    @app.post("/workbench/login", include_in_schema=False)
    def login(request: Request, name: str = Form(""), secret: str = Form(""),
              next: str = Form("/workbench")):
        name = " ".join(name.split())[:100]
        if not name or not check_secret(secret):
            time.sleep(0.5)  # slows guessing
            return page(request, "login.html", http_status=401, next=_safe_next(next),
                        error="Name and a valid token or steward password are required.")
        sid, _ = sessions.create(name)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", max_age=SESSION_SECONDS,
                            path="/")
        return response

    @app.post("/workbench/logout", include_in_schema=False)
    def logout(request: Request, csrf: str = Form("")):
        session = steward(request)
        if session and secrets.compare_digest(csrf, session.csrf):
            sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse("/workbench/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/workbench", response_class=HTMLResponse, include_in_schema=False)
    def queue_page(request: Request, status: str = "open", page_number: int = 1):
        from pipelines.identify.review import GROUP_ORDER
        from pipelines.serve.queue import list_groups

        session = steward(request)
        if session is None:
            return to_login(request)
        status = status if status in ("open", "decided", "all") else "open"
        page_number = max(1, min(page_number, 10**6))
        with holder.acquire() as wh:
            if wh is None:
                return page(request, "no_warehouse.html", http_status=503, session=session,
                            error=holder.last_error)
            total, groups = list_groups(wh, config, status, None, PAGE_SIZE, (page_number - 1) * PAGE_SIZE)
            return page(request, "queue.html", session=session, groups=groups, total=total,
                        status=status, page_number=page_number, page_size=PAGE_SIZE,
                        order=GROUP_ORDER, version=wh.label)

    @app.get("/workbench/groups/{group_id}", response_class=HTMLResponse, include_in_schema=False)
    def group_page(request: Request, group_id: str, done: str | None = None):
        from pipelines.serve.queue import group_detail

        session = steward(request)
        if session is None:
            return to_login(request)
        if not _is_group_id(group_id):
            return page(request, "message.html", http_status=404, session=session, title="Not found",
                        message="No such review group.")
        with holder.acquire() as wh:
            if wh is None:
                return page(request, "no_warehouse.html", http_status=503, session=session,
                            error=holder.last_error)
            detail = group_detail(wh, config, group_id)
            if detail is None:
                return page(request, "message.html", http_status=404, session=session, title="Not found",
                            message=f"No review group {group_id} in warehouse {wh.label}.")
            next_group = _next_open_group(wh, config, group_id)
            return page(request, "group.html", session=session, g=detail, done=done,
                        next_group=next_group, version=wh.label, error=None)

    @app.post("/workbench/groups/{group_id}/decide", include_in_schema=False)
    def decide(request: Request, group_id: str, decision: str = Form(""), reason: str = Form(""),
               csrf: str = Form("")) -> Response:
        from pipelines.serve.queue import decide_in_group, group_detail

        session = steward(request)
        if session is None:
            return to_login(request)
        if not secrets.compare_digest(csrf.encode(), session.csrf.encode()):
            return page(request, "message.html", http_status=403, session=session, title="Forbidden",
                        message="The form has expired or did not come from this workbench; reload the page.")
        if not _is_group_id(group_id):
            return page(request, "message.html", http_status=404, session=session, title="Not found",
                        message="No such review group.")
        with holder.acquire() as wh:
            if wh is None:
                return page(request, "no_warehouse.html", http_status=503, session=session,
                            error=holder.last_error)
            error = None
            if decision not in ("must_link", "cannot_link", "not_sure"):
                error = "Choose must-link, cannot-link or not sure."
            elif not reason.strip() or len(reason) > 500:
                error = "Give a reason (up to 500 characters): the evidence you relied on."
            else:
                try:
                    decide_in_group(wh, config, group_id, decision, session.steward, reason)
                except Problem as err:
                    error = err.detail
            if error is None:
                return RedirectResponse(f"/workbench/groups/{group_id}?done={decision}", status_code=303)
            detail = group_detail(wh, config, group_id)
            if detail is None:
                return page(request, "message.html", http_status=404, session=session, title="Not found",
                            message=f"No review group {group_id}.")
            return page(request, "group.html", http_status=422, session=session, g=detail, done=None,
                        next_group=_next_open_group(wh, config, group_id), version=wh.label, error=error)


def _next_open_group(wh, config: ServeConfig, current: str) -> str | None:
    from pipelines.serve.queue import list_groups

    _, groups = list_groups(wh, config, "open", None, 2, 0)
    return next((g["group_id"] for g in groups if g["group_id"] != current), None)


def _is_group_id(value: str) -> bool:
    return len(value) == 16 and all(c in "0123456789abcdef" for c in value)


def _safe_next(target: str) -> str:
    """Only a path inside the workbench (no open redirect to another site)."""
    return target if target.startswith("/workbench") and "//" not in target and "\\" not in target \
        else "/workbench"


def show(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value)
    return str(value)
