"""Files API state: stored files with Gemini's file resource, and resumable upload sessions."""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from poemlib.offline.gemini.wire import Answer, error_answer, now_rfc3339

FILE_LIFETIME_S = 48 * 3600  # Gemini keeps uploaded files for 48 hours
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class IdMaker:
    """Seeded resource ids (batches, files, upload sessions): the same seed gives the same ids."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"gemini-server-ids-{seed}")
        self._lock = threading.Lock()

    def __call__(self, length: int = 24) -> str:
        with self._lock:
            return "".join(self._rng.choice(ID_ALPHABET) for _ in range(length))


@dataclass
class StoredFile:
    """A file resource (`meta`, as the API shows it) and its bytes."""

    meta: dict[str, Any]
    data: bytes


@dataclass
class UploadSession:
    """A resumable upload in progress: the file to create, the announced size and the bytes so far."""

    file_id: str
    mime: str
    display_name: str
    expected: int | None
    buffer: bytearray = field(default_factory=bytearray)


def file_not_found(file_id: str, outcome: str = "not_found") -> Answer:
    """Gemini's answer for a missing file (403, as the real API does not reveal existence)."""
    message = f"You do not have permission to access the File {file_id} or it may not exist."
    return error_answer(403, "PERMISSION_DENIED", message, outcome)


class FileStore:
    """Uploaded and generated files by id, plus the upload sessions that will become files."""

    def __init__(self, base_url: Callable[[], str], new_id: IdMaker) -> None:
        self._base_url = base_url  # known only once the server has bound its port
        self.new_id = new_id
        self.files: dict[str, StoredFile] = {}
        self.uploads: dict[str, UploadSession] = {}
        self._lock = threading.Lock()

    def get(self, file_id: str) -> StoredFile | None:
        """The stored file, or None."""
        return self.files.get(file_id)

    def lookup(self, file_id: str) -> tuple[str, bytes] | None:
        """(mime type, bytes) of a stored file, for requests that reference it by fileUri."""
        stored = self.files.get(file_id)
        return None if stored is None else (str(stored.meta.get("mimeType", "")), stored.data)

    def delete(self, file_id: str) -> bool:
        """Forget a file; False when there was none."""
        with self._lock:
            return self.files.pop(file_id, None) is not None

    def listing(self) -> list[dict[str, Any]]:
        """Every file resource."""
        return [f.meta for f in list(self.files.values())]

    def store(self, file_id: str, data: bytes, mime: str, *, display_name: str = "", source: str = "UPLOADED") -> dict[str, Any]:
        """Keep a file and return its resource (a GENERATED file also gets a downloadUri)."""
        now = now_rfc3339()
        expires = datetime.fromtimestamp(time.time() + FILE_LIFETIME_S, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        base_url = self._base_url()
        meta: dict[str, Any] = {
            "name": f"files/{file_id}",
            "mimeType": mime,
            "sizeBytes": str(len(data)),
            "createTime": now,
            "updateTime": now,
            "expirationTime": expires,
            "sha256Hash": base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode(),
            "uri": f"{base_url}/v1beta/files/{file_id}",
            "state": "ACTIVE",
            "source": source,
        }
        if display_name:
            meta["displayName"] = display_name
        if source == "GENERATED":
            meta["downloadUri"] = f"{base_url}/download/v1beta/files/{file_id}:download?alt=media"
        with self._lock:
            self.files[file_id] = StoredFile(meta, data)
        return meta

    def open_upload(self, file_id: str | None, mime: str, display_name: str, expected: int | None) -> str:
        """Start an upload session; returns its id (the file gets `file_id`, or a fresh id)."""
        session_id = self.new_id(12)
        session = UploadSession(file_id or self.new_id(12), mime, display_name, expected)
        with self._lock:
            self.uploads[session_id] = session
        return session_id

    def close_upload(self, session_id: str) -> UploadSession | None:
        """End an upload session and return it (None when unknown)."""
        with self._lock:
            return self.uploads.pop(session_id, None)
