"""``/jobs``: submit a job, read its status and answer, cancel it."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from api.client import CannotCancel, UnknownJob
from api.http.auth import api_caller, reader
from api.http.state import ServerState, server_state
from workers.jobs import INTERACTIVE_PRIORITY

_JOB_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")

router = APIRouter()


class JobRequest(BaseModel):
    """``POST /jobs``: one job, exactly one input."""

    model_config = ConfigDict(extra="forbid")

    model: str
    text: str | None = None
    texts: list[str] | None = None
    image_base64: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    deadline: float | None = Field(None, description="seconds from now")
    wait: bool = False
    route: Literal["auto", "model", "fallback"] = "auto"
    bypass: str | None = None
    priority: int = Field(INTERACTIVE_PRIORITY, ge=0, le=9, description="0 (least urgent) to 9")


def _check_job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise HTTPException(422, "not a job id")
    return job_id


@router.post("/jobs", status_code=202, dependencies=[Depends(api_caller)])
def submit(request: JobRequest, state: ServerState = Depends(server_state)) -> dict[str, Any]:
    image = None
    if request.image_base64 is not None:
        # Sized before decoding: base64 is 4/3 of the bytes, so a longer text can only be refused.
        if len(request.image_base64) > 4 * ((state.settings.max_image_bytes + 2) // 3) + 4:
            raise HTTPException(413, f"image over {state.settings.max_image_bytes} bytes (FUSEBOX_MAX_IMAGE_BYTES)")
        try:
            image = base64.b64decode(request.image_base64, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, "image_base64 is not valid base64") from None
    handle = state.client.submit(request.model, image=image, text=request.text, texts=request.texts,
                                 options=request.options, deadline=request.deadline, wait=request.wait,
                                 route=request.route, bypass=request.bypass, priority=request.priority)
    return {"job_id": handle.id, "model": handle.model, "routed_to": handle.routed_to,
            "status_url": f"/jobs/{handle.id}"}


@router.get("/jobs/{job_id}", dependencies=[Depends(reader)])
def job(job_id: str, state: ServerState = Depends(server_state)) -> dict[str, Any]:
    _check_job_id(job_id)
    result = state.client.app.AsyncResult(job_id)
    try:
        status = state.client.status(job_id)
    except UnknownJob as exc:
        raise HTTPException(404, str(exc)) from None
    body: dict[str, Any] = {"job_id": job_id, "status": status}
    if status == "SUCCESS":
        body["result"] = result.result
    elif status == "FAILURE":
        exc = result.result
        body["error"] = {"type": type(exc).__name__, "message": str(exc)}
    elif status == "PARKED":
        body["parked"] = result.info
    return body


@router.delete("/jobs/{job_id}")
def cancel_job(job_id: str, state: ServerState = Depends(server_state), who: str = Depends(api_caller)) -> dict[str, Any]:
    _check_job_id(job_id)
    try:
        outcome = state.client.cancel(job_id, reason=f"cancelled via HTTP by {who}")
    except UnknownJob as exc:
        raise HTTPException(404, str(exc)) from None
    except CannotCancel as exc:
        raise HTTPException(409, str(exc)) from None
    return {"job_id": job_id, "status": "CANCELLED", "outcome": outcome}
