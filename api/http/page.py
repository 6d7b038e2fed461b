"""``/``: the live breaker page."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def page() -> str:
    return resources.files("api").joinpath("static/breakers.html").read_text(encoding="utf-8")
