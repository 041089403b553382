"""Emulated Gemini Files API, as ``google.genai``'s ``files.upload`` / ``files.get`` /
``files.download`` call it (what Gemini batch mode's file input and results file use).

* ``POST /upload/{v}/files`` with ``X-Goog-Upload-Protocol: resumable`` and
  ``X-Goog-Upload-Command: start`` opens an upload session: the answer carries
  ``X-Goog-Upload-URL`` (the session, authorised by its ``upload_id`` like the real one) and
  ``X-Goog-Upload-Status: active``.
* ``POST`` to that URL with ``X-Goog-Upload-Command: upload`` (more chunks follow) or
  ``upload, finalize`` (the last one) and ``X-Goog-Upload-Offset``; the finalizing answer is
  ``{"file": File}`` with ``X-Goog-Upload-Status: final``. A file over 2 GB is refused.
* ``GET /{v}/files/{id}``: the ``File``; ``GET /{v}/files/{id}:download?alt=media``: its bytes
  (only generated files, e.g. a batch's results file, are downloadable, as on the real API).
  The SDK downloads on ``v1``, whose ``/v1/files/...`` paths OpenAI's routes share: requests
  with a Gemini key are handed over here.

Files live in the emulator's :class:`~llm.emulator.batch_store.BatchService` (``files``,
keyed ``files/<id>``) next to OpenAI's, and belong to the key that created them.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from aiohttp import web

from llm.emulator.batch_http import BatchRoutesBase, iso, read_json
from llm.emulator.batch_store import BatchService
from llm.emulator.protocol import EmuError

#: Largest file the Files API takes (2 GB).
GEMINI_MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024


def add_gemini_file(
    service: BatchService,
    api_key: str | None,
    content: bytes,
    *,
    display_name: str = "",
    mime_type: str = "application/jsonl",
    generated: bool = False,
) -> dict[str, Any]:
    """Store a Gemini file and return its ``File`` resource (private fields start with ``_``)."""
    name = "files/" + secrets.token_hex(8)
    now = service.now()
    info: dict[str, Any] = {
        "name": name,
        "displayName": display_name,
        "mimeType": mime_type,
        "sizeBytes": str(len(content)),
        "createTime": iso(now),
        "updateTime": iso(now),
        "expirationTime": iso(now + 48 * 3600),
        "sha256Hash": hashlib.sha256(content).hexdigest(),
        "state": "ACTIVE",
        "source": "GENERATED" if generated else "UPLOADED",
        "_content": content,
        "_key": api_key,
    }
    service.files[name] = info
    return info


def gemini_file(service: BatchService, api_key: str | None, name: str) -> dict[str, Any]:
    """The stored file ``name`` (``files/<id>``) of ``api_key``, or a 404."""
    info = service.files.get(name)
    if info is None or "_key" not in info or info["_key"] != api_key:
        raise EmuError("not_found", f"File {name} does not exist.")
    return info


class GeminiFileRoutes(BatchRoutesBase):
    """The Files endpoints batch mode uses (upload sessions, get, download)."""

    def add_gemini_files(self, app: web.Application) -> None:
        add = app.router.add_route
        add("POST", r"/upload/{version}/files", self.gemini_upload)
        add("GET", r"/{version}/files/{fid:[^:/]+}:download", self.gemini_download)
        add("GET", r"/{version}/files/{fid:[^:/]+}", self.gemini_file_get)

    @property
    def _sessions(self) -> dict[str, dict[str, Any]]:
        return self.service.uploads

    def _public(self, info: dict[str, Any], request: web.Request) -> dict[str, Any]:
        out = {k: v for k, v in info.items() if not k.startswith("_")}
        origin = f"{request.scheme}://{request.host}"
        version = request.match_info.get("version", "v1beta")
        out["uri"] = f"{origin}/{version}/{info['name']}"
        if info["source"] == "GENERATED":
            out["downloadUri"] = f"{origin}/{version}/{info['name']}:download?alt=media"
        return out

    async def gemini_upload(self, request: web.Request) -> web.StreamResponse:
        upload_id = request.query.get("upload_id")
        if upload_id is None:
            return await self._start_upload(request)
        session = self._sessions.get(upload_id)
        if session is None:
            return self._error("google", EmuError("not_found", "No such upload session."))
        command = request.headers.get("X-Goog-Upload-Command", "")
        offset = int(request.headers.get("X-Goog-Upload-Offset", "0") or 0)
        chunk = await request.read()
        if offset != len(session["data"]):
            return self._error(
                "google", EmuError("invalid_request", "X-Goog-Upload-Offset does not match.")
            )
        session["data"] += chunk
        if "finalize" not in command:
            return web.json_response({}, headers={"X-Goog-Upload-Status": "active"})
        del self._sessions[upload_id]
        data = bytes(session["data"])
        if len(data) != session["size"]:
            return self._error(
                "google",
                EmuError("invalid_request", f"Expected {session['size']} bytes, got {len(data)}."),
            )
        info = add_gemini_file(
            self.service,
            session["key"],
            data,
            display_name=session["display_name"],
            mime_type=session["mime_type"],
        )
        return web.json_response(
            {"file": self._public(info, request)}, headers={"X-Goog-Upload-Status": "final"}
        )

    async def _start_upload(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()

        def start(key: str | None) -> web.StreamResponse:
            headers = request.headers
            if headers.get("X-Goog-Upload-Protocol") != "resumable" or (
                headers.get("X-Goog-Upload-Command") != "start"
            ):
                raise EmuError("invalid_request", "Only resumable uploads are supported.")
            size = int(headers.get("X-Goog-Upload-Header-Content-Length", "0") or 0)
            if size > GEMINI_MAX_FILE_BYTES:
                raise EmuError(
                    "invalid_request", f"File size exceeds the limit: {GEMINI_MAX_FILE_BYTES}."
                )
            body = read_json(raw)
            file = (body.get("file") if isinstance(body, dict) else None) or {}
            upload_id = secrets.token_urlsafe(18)
            self._sessions[upload_id] = {
                "key": key,
                "size": size,
                "data": bytearray(),
                "display_name": file.get("displayName") or "",
                "mime_type": headers.get("X-Goog-Upload-Header-Content-Type")
                or file.get("mimeType")
                or "application/octet-stream",
            }
            origin = f"{request.scheme}://{request.host}"
            url = f"{origin}{request.path}?upload_id={upload_id}&upload_protocol=resumable"
            return web.json_response(
                {}, headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}
            )

        return await self._guard("google", request, start)

    async def gemini_file_get(self, request: web.Request) -> web.StreamResponse:
        name = _file_name(request)
        return await self._guard(
            "google",
            request,
            lambda key: self._public(gemini_file(self.service, key, name), request),
        )

    async def gemini_download(self, request: web.Request) -> web.StreamResponse:
        name = _file_name(request)

        def download(key: str | None) -> web.Response:
            info = gemini_file(self.service, key, name)
            if info["source"] != "GENERATED":
                raise EmuError("invalid_request", "Only generated files can be downloaded.")
            return web.Response(body=info["_content"], content_type="application/octet-stream")

        return await self._guard("google", request, download)


def _file_name(request: web.Request) -> str:
    """``files/<id>`` of a file route (``/v1/files/<id>:download`` reaches OpenAI's
    ``/v1/files/{fid}`` route first, which hands Gemini requests over with the suffix on)."""
    return "files/" + request.match_info["fid"].removesuffix(":download")
