"""The dashboard's pages, htmx fragments and actions (a router; the app is built in app.py).

Reads are GET; every mutation is a POST that passes `check_mutation` (read-only switch, same origin, CSRF) and is
recorded in the audit log, the structured log and `idempotency_admin_actions_total`.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from middleware import Record, RecordFilter, is_stuck
from middleware.admin import now_ms

from . import present
from .actions import MAX_TTL_SECONDS, MIN_TTL_SECONDS, Actions, Outcome
from .security import CSRF_COOKIE, check_mutation, csrf_token

if TYPE_CHECKING:
    from .app import Dashboard

router = APIRouter()
MAX_FORM_BYTES = 256 * 1024


def dash(request: Request) -> Dashboard:
    return request.app.state.dashboard  # type: ignore[no-any-return]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    d = dash(request)
    token, new_cookie = csrf_token(request)
    context.update(
        request=request, read_only=d.read_only, csrf=token, title=d.title, now_ms=now_ms(), max_ttl=MAX_TTL_SECONDS
    )
    response = d.templates.TemplateResponse(request, template, context, status_code=status_code)
    if new_cookie:
        path = request.scope.get("root_path") or "/"
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path=path)
    return response


def is_fragment(request: Request) -> bool:
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-history-restore-request") != "true"


def clamp(raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"not a whole number: {raw[:40]!r}") from None
    return max(low, min(high, value))


def record_key_param(request: Request, raw: str | None) -> str:
    """A record key from user input: it must name a record inside this store's prefix."""
    prefix = dash(request).store.prefix
    if not raw or len(raw) > 2048 or not raw.startswith(f"{prefix}:{{"):
        raise HTTPException(400, "not a record key of this store")
    return raw


def filter_from(params: Any) -> RecordFilter:
    try:
        return RecordFilter(
            key=(params.get("key") or "").strip(),
            state=params.get("state") or "",
            method=(params.get("method") or "").strip().upper(),
            route=(params.get("route") or "").strip(),
            status_class=params.get("status") or "",
        )
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def filter_query(record_filter: RecordFilter, **extra: Any) -> str:
    pairs = {
        "key": record_filter.key,
        "state": record_filter.state,
        "method": record_filter.method,
        "route": record_filter.route,
        "status": record_filter.status_class,
        **extra,
    }
    return urllib.parse.urlencode({k: v for k, v in pairs.items() if v not in ("", None)})


async def form_of(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    return urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=1000)


def first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


class FormParams:
    def __init__(self, form: dict[str, list[str]]) -> None:
        self.form = form

    def get(self, name: str) -> str | None:
        return first(self.form, name)


# -- pages --


@router.get("/", name="overview")
async def overview(request: Request) -> HTMLResponse:
    return render(request, "idemscope/overview.html", **await overview_context(request))


@router.get("/fragments/overview", name="overview_fragment")
async def overview_fragment(request: Request) -> HTMLResponse:
    return render(request, "idemscope/_overview_body.html", **await overview_context(request))


async def overview_context(request: Request) -> dict[str, Any]:
    d = dash(request)
    budget = clamp(request.query_params.get("budget"), d.limits.scan_budget, 100, d.limits.max_scan_budget)
    stats = await d.store.keyspace_stats(scan_budget=budget)
    chart = await d.prometheus.chart() if d.prometheus else d.local_rates.chart()
    return {"stats": stats, "chart": chart, "budget": budget}


@router.get("/keys", name="keys")
async def keys(request: Request) -> HTMLResponse:
    d = dash(request)
    params = request.query_params
    record_filter = filter_from(params)
    size = clamp(params.get("size"), d.limits.page_size, 1, d.limits.max_page_size)
    budget = clamp(params.get("budget"), d.limits.scan_budget, 100, d.limits.max_scan_budget)
    cursor = clamp(params.get("cursor"), 0, 0, 2**80)  # a cluster cursor also carries its node
    page = await d.store.list_records(record_filter, cursor, page_size=size, scan_budget=budget)
    context: dict[str, Any] = {
        "filter": record_filter,
        "page": page,
        "size": size,
        "budget": budget,
        "cursor": cursor,
        "query": filter_query(record_filter),
        "more_query": filter_query(record_filter, cursor=page.cursor, size=size, budget=budget, fragment="rows"),
    }
    if is_fragment(request):
        template = "idemscope/_keys_more.html" if params.get("fragment") == "rows" else "idemscope/_keys_results.html"
        return render(request, template, **context)
    return render(request, "idemscope/keys.html", **context)


@router.get("/locks", name="locks")
async def locks(request: Request) -> HTMLResponse:
    return render(request, "idemscope/locks.html", **await locks_context(request))


@router.get("/fragments/locks", name="locks_fragment")
async def locks_fragment(request: Request) -> HTMLResponse:
    return render(request, "idemscope/_locks_table.html", **await locks_context(request))


async def locks_context(request: Request) -> dict[str, Any]:
    d = dash(request)
    limits = d.limits
    interval = clamp(
        request.query_params.get("interval"), limits.poll_seconds, limits.min_poll_seconds, limits.max_poll_seconds
    )
    page = await d.store.list_records(
        RecordFilter(state="in_flight"), 0, page_size=limits.max_page_size, scan_budget=limits.scan_budget
    )
    now = now_ms()
    rows = sorted(page.records, key=lambda r: r.created_ms)
    return {"locks": rows, "stuck": {r.redis_key for r in rows if is_stuck(r, now)}, "page": page, "interval": interval}


@router.get("/record", name="record")
async def record(request: Request, k: str | None = None) -> HTMLResponse:
    d = dash(request)
    record_key = record_key_param(request, k)
    found = await d.store.get(record_key)
    trail = await d.store.audit_for(record_key)
    if found is None:
        return render(
            request, "idemscope/record.html", status_code=404, record=None, record_key=record_key, trail=trail
        )
    return render(request, "idemscope/record.html", **record_context(found), trail=trail)


def record_context(found: Record) -> dict[str, Any]:
    content_type = present.content_type_of(found.headers)
    return {
        "record": found,
        "record_key": found.redis_key,
        "headers": present.mask_headers(found.headers),
        "body": present.body_view(found.body, found.stored, found.size, content_type),
        "stuck": is_stuck(found, now_ms()),
    }


@router.get("/record/body", name="record_body")
async def record_body(request: Request, k: str | None = None) -> Response:
    found = await dash(request).store.get(record_key_param(request, k))
    if found is None or found.state != "completed" or not found.stored:
        raise HTTPException(404, "no stored body for this key")
    return Response(
        found.body,
        media_type="application/octet-stream",
        headers={"content-disposition": 'attachment; filename="response-body.bin"'},
    )


@router.get("/audit", name="audit")
async def audit(request: Request) -> HTMLResponse:
    entries = await dash(request).store.audit_read(200)
    return render(request, "idemscope/audit.html", entries=entries)


# -- actions --


def actions(request: Request) -> Actions:
    d = dash(request)
    check_mutation(request, d.read_only)
    return Actions(d.store, d.metrics, d.limits.bulk_batch)


def answer(request: Request, outcome: Outcome, row: bool, status_code: int = 200) -> HTMLResponse:
    if row:
        return render(request, "idemscope/_row_gone.html", text=outcome.text, level=LEVELS[outcome.result])
    return render(
        request, "idemscope/_message.html", status_code=status_code, text=outcome.text, level=LEVELS[outcome.result]
    )


LEVELS = {"ok": "ok", "not_found": "warn", "refused": "warn", "error": "error"}


@router.post("/actions/evict", name="evict")
async def evict(request: Request) -> HTMLResponse:
    act = actions(request)
    form = await form_of(request)
    record_key = record_key_param(request, first(form, "k"))
    outcome = await act.evict(record_key, dash(request).actor(request))
    return answer(request, outcome, bool(first(form, "row")))


@router.post("/actions/release", name="release")
async def release(request: Request) -> HTMLResponse:
    act = actions(request)
    form = await form_of(request)
    record_key = record_key_param(request, first(form, "k"))
    outcome = await act.release(record_key, first(form, "token") or "", dash(request).actor(request))
    return answer(request, outcome, bool(first(form, "row")))


@router.post("/actions/ttl", name="set_ttl")
async def set_ttl(request: Request) -> HTMLResponse:
    act = actions(request)
    form = await form_of(request)
    record_key = record_key_param(request, first(form, "k"))
    raw = (first(form, "ttl") or "").strip()
    if not raw.isdigit() or not MIN_TTL_SECONDS <= int(raw) <= MAX_TTL_SECONDS:
        text = f"TTL must be a whole number of seconds from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}."
        return answer(request, Outcome("refused", text), False, 400)
    outcome = await act.set_ttl(record_key, int(raw), dash(request).actor(request))
    status = {"ok": 200, "not_found": 404, "refused": 409}[outcome.result]
    return answer(request, outcome, False, status)


def bulk_targets(request: Request, form: dict[str, list[str]]) -> tuple[list[str] | None, RecordFilter]:
    """Selected record keys (if any were ticked), else the filter of the page."""
    limit = dash(request).limits.max_selected
    selected = form.get("k") or []
    if len(selected) > limit:
        raise HTTPException(400, f"at most {limit} selected keys at once")
    keys = [record_key_param(request, k) for k in selected]
    return (keys or None), filter_from(FormParams(form))


@router.post("/actions/bulk-evict/preview", name="bulk_preview")
async def bulk_preview(request: Request) -> HTMLResponse:
    act = actions(request)
    form = await form_of(request)
    selected, record_filter = bulk_targets(request, form)
    if selected is not None:
        count, complete = len(selected), True
    else:
        count, complete = await act.count_matching(record_filter, dash(request).limits.max_scan_budget)
    return render(
        request, "idemscope/_bulk_preview.html", count=count, complete=complete, selected=selected, filter=record_filter
    )


@router.post("/actions/bulk-evict", name="bulk_evict")
async def bulk_evict(request: Request) -> HTMLResponse:
    act = actions(request)
    form = await form_of(request)
    selected, record_filter = bulk_targets(request, form)
    outcome = await act.bulk_evict(
        dash(request).actor(request), selected, record_filter, limit=dash(request).limits.max_bulk
    )
    return answer(request, outcome, False)
