"""The dashboard's pages and form posts (server-rendered Jinja2; htmx only boosts links and forms)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import anyio
from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from milvus_memory_mcp import __version__
from milvus_memory_mcp.records import Caller, Scope, iso
from milvus_memory_mcp.ui import views
from milvus_memory_mcp.ui.backend import Backend, Refused
from milvus_memory_mcp.ui.charts import writes_chart
from milvus_memory_mcp.ui.session import Session, Sessions, origin_ok, same

PAGE_SIZE = 50
CHART_DAYS = 30
CHARTS = 8
DONE = {"updated": "Saved: the memory was updated.", "deleted": "Deleted.", "restored": "Restored."}
Handler = Callable[["Pages", Request, Session], Awaitable[Response]]


def _status(message: str) -> int:
    if "read-only" in message or "limited to" in message:
        return 403
    return 404 if message.startswith("No memory ") else 400  # errors.not_found


def login_required(handler: Handler) -> Callable[[Pages, Request], Awaitable[Response]]:
    """A page for logged-in sessions; a POST also needs the session's CSRF token and a same-site origin."""

    @functools.wraps(handler)
    async def run(self: Pages, request: Request) -> Response:
        session = self.sessions.current(request)
        if session is None:
            if request.method != "GET":
                return self.render(request, None, "error.html", {"message": "Log in again."}, 401)
            return RedirectResponse("/ui/login?" + urlencode({"next": request.url.path}), 303)
        if request.method == "POST":
            form = await request.form()
            if not origin_ok(request) or not same(str(form.get("csrf") or ""), session.csrf):
                return self.render(request, session, "error.html", {"message": "Refused: stale or forged form."}, 403)
        try:
            return await handler(self, request, session)
        except Refused as e:
            return self.render(request, session, "error.html", {"message": str(e)}, _status(str(e)))

    return run


class Pages:
    def __init__(self, backend: Backend, sessions: Sessions, env: Environment, login_hint: str) -> None:
        self.backend = backend
        self.sessions = sessions
        self.env = env
        self.login_hint = login_hint

    def render(
        self, request: Request, session: Session | None, name: str, ctx: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        caller = session.caller if session else None
        base = {
            "session": session,
            "csrf": session.csrf if session else "",
            "read_only": bool(caller and caller.read_only),
            "bound": dict(caller.bound.items()) if caller and caller.bound else {},
            "path": request.url.path,
            "version": __version__,
            "when": views.when,
            "shown_json": views.shown_json,
            "scope_query": views.scope_query,
        }
        return HTMLResponse(self.env.get_template(name).render(**base, **ctx), status)

    # login

    async def login_form(self, request: Request) -> Response:
        nonce = self.sessions.login_nonce(request)
        ctx = {"nonce": nonce, "next": _local(request.query_params.get("next")), "hint": self.login_hint}
        response = self.render(request, None, "login.html", ctx)
        self.sessions.set_login_cookie(request, response, nonce)
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        nonce = request.cookies.get("mm_login")
        if not origin_ok(request) or not same(str(form.get("nonce") or ""), nonce):
            return self.render(request, None, "error.html", {"message": "Refused: stale or forged form."}, 403)
        session = self.sessions.login(str(form.get("token") or ""))
        if session is None:
            await anyio.sleep(0.5)  # slows guessing (tokens have 16+ characters anyway)
            ctx = {"nonce": nonce, "next": _local(str(form.get("next") or "")), "hint": self.login_hint}
            return self.render(request, None, "login.html", {**ctx, "error": "That token is not valid."}, 401)
        response = RedirectResponse(_local(str(form.get("next") or "")) or "/ui/memories", 303)
        self.sessions.set_cookie(request, response, session)
        return response

    @login_required
    async def logout(self, request: Request, session: Session) -> Response:
        self.sessions.logout(session)
        response = RedirectResponse("/ui/login", 303)
        self.sessions.clear_cookie(request, response)
        return response

    # memories: list and search

    async def _scope_choice(self, caller: Caller, scope: dict[str, str | None]) -> list[dict[str, Any]] | None:
        """The scopes to pick from when the caller names none and has no bound or default scope."""
        if any(scope.values()) or caller.bound is not None or caller.default_user_id:
            return None
        return (await self.backend.stats(caller))["scopes"]

    @login_required
    async def memories(self, request: Request, session: Session) -> Response:
        q = request.query_params
        scope = views.scope_args(q)
        ctx: dict[str, Any] = {
            "scope": scope,
            "filters": q.get("filters") or "",
            "query": "",
            "mode": "list",
            "choice": None,
        }
        ctx["done"] = DONE.get(q.get("done") or "")
        choice = await self._scope_choice(session.caller, scope)
        if choice is not None:
            return self.render(request, session, "memories.html", {**ctx, "choice": choice, "results": []})
        result = await self.backend.call(
            "list_memories",
            session.caller,
            **scope,
            filters=views.json_object(q.get("filters"), "filters"),
            limit=PAGE_SIZE,
            cursor=q.get("cursor") or None,
        )
        ctx["results"] = result.get("results", [])
        if result.get("next_cursor"):
            ctx["next"] = "/ui/memories?" + urlencode({**_kept(q), "cursor": result["next_cursor"]})
        if q.get("cursor"):
            ctx["first"] = "/ui/memories?" + urlencode(_kept(q))
        return self.render(request, session, "memories.html", ctx)

    @login_required
    async def search(self, request: Request, session: Session) -> Response:
        q = request.query_params
        scope = views.scope_args(q)
        query = (q.get("q") or "").strip()
        ctx: dict[str, Any] = {"scope": scope, "filters": q.get("filters") or "", "query": query, "mode": "search"}
        choice = await self._scope_choice(session.caller, scope)
        if choice is not None or not query:
            return self.render(request, session, "memories.html", {**ctx, "choice": choice, "results": []})
        result = await self.backend.call(
            "search_memories",
            session.caller,
            query=query,
            **scope,
            filters=views.json_object(q.get("filters"), "filters"),
            limit=25,
        )
        return self.render(
            request, session, "memories.html", {**ctx, "choice": None, "results": result.get("results", [])}
        )

    # one memory

    @login_required
    async def memory(self, request: Request, session: Session) -> Response:
        memory_id = request.path_params["memory_id"]
        events = (await self.backend.call("memory_history", session.caller, memory_id=memory_id))["events"]
        deleted = bool(events) and events[-1]["event"] == "DELETE"
        current = None if deleted else await self.backend.call("get_memory", session.caller, memory_id=memory_id)
        as_of = request.query_params.get("as_of") or ""
        belief = views.belief_at(events, views.parse_local_time(as_of)) if as_of else None
        ctx = {
            "memory_id": memory_id,
            "current": current,
            "deleted": deleted,
            "last_text": next((e.get("new_memory") or e.get("old_memory") for e in reversed(events)), ""),
            "events": views.timeline(events),
            "as_of": as_of,
            "belief": belief,
            "done": DONE.get(request.query_params.get("done") or ""),
        }
        return self.render(request, session, "memory.html", ctx)

    async def _write(self, request: Request, session: Session, tool: str, done: str, **args: Any) -> Response:
        memory_id = request.path_params["memory_id"]
        if session.caller.read_only:
            raise Refused("This credential is read-only; it cannot change memories.")
        await self.backend.call(tool, session.caller, memory_id=memory_id, **args)
        return RedirectResponse(f"/ui/memory/{_quoted(memory_id)}?done={done}", 303)

    @login_required
    async def edit(self, request: Request, session: Session) -> Response:
        form = await request.form()
        metadata = views.json_object(str(form.get("metadata") or ""), "metadata")
        return await self._write(request, session, "update_memory", "updated", data=form.get("data"), metadata=metadata)

    @login_required
    async def delete(self, request: Request, session: Session) -> Response:
        return await self._write(request, session, "delete_memory", "deleted")

    @login_required
    async def restore(self, request: Request, session: Session) -> Response:
        event = str((await request.form()).get("event_id") or "") or None
        return await self._write(request, session, "restore_memory", "restored", event_id=event)

    # stats

    @login_required
    async def stats(self, request: Request, session: Session) -> Response:
        scope = views.scope_args(request.query_params)
        stats = await self.backend.stats(session.caller)
        activity = await self.backend.activity(session.caller, Scope(**scope), CHART_DAYS)
        charts = [(a.scope.describe(), writes_chart(a)) for a in activity.scopes[:CHARTS]]
        ctx = {"stats": stats, "charts": charts, "latest": activity.latest, "scope": scope}
        ctx["days"] = CHART_DAYS
        ctx["when_us"] = lambda us: views.when(iso(us))
        return self.render(request, session, "stats.html", ctx)


def _kept(q: Any) -> dict[str, str]:
    return {k: q[k] for k in (*views.SCOPE_FIELDS, "filters") if q.get(k)}


def _local(path: str | None) -> str:
    """A redirect target inside the dashboard only (never another site)."""
    return path if path and path.startswith("/ui/") and not path.startswith("//") and "\\" not in path else ""


def _quoted(memory_id: str) -> str:
    from urllib.parse import quote

    return quote(memory_id, safe="")
