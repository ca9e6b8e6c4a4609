"""A minimal OpenAI-compatible chat-completions server over a local transformers VLM (FastAPI + uvicorn).

It exists so the endpoint client is tested and benchmarked against a real HTTP server on
loopback that serves a real model, with the same wire format vLLM and SGLang speak. It is
not a production server: one model copy, requests answered one at a time under a lock
(production endpoints batch continuously; use vLLM or SGLang for that).
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from typing import Any

from captioners.vlm import VlmBackend, VlmRequest

MAX_IMAGE_BYTES = 32 * 1024 * 1024


def build_app(backend: VlmBackend, model_name: str = "default", fail_first: int = 0) -> Any:
    """FastAPI app serving `backend`. `fail_first` answers the first N requests with 503 (to test retries)."""
    from fastapi import FastAPI, HTTPException

    app = FastAPI()
    lock = threading.Lock()
    state = {"requests": 0}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model"}]}

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]) -> dict[str, Any]:
        state["requests"] += 1
        if state["requests"] <= fail_first:
            raise HTTPException(status_code=503, detail="warming up")
        image, prompt = _parse_messages(body.get("messages"))
        req = VlmRequest(image_png=image, prompt=prompt, max_new_tokens=int(body.get("max_tokens") or 128))
        with lock:
            reply = backend.generate([req])[0]
        if reply.error is not None:
            raise HTTPException(status_code=500, detail=reply.error)
        return {
            "id": f"chatcmpl-{state['requests']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply.text}}],
            "usage": {"completion_tokens": reply.output_tokens},
        }

    app.state.counters = state
    return app


def _parse_messages(messages: Any) -> tuple[bytes, str]:
    from fastapi import HTTPException

    if not isinstance(messages, list) or not messages:
        raise HTTPException(status_code=400, detail="messages must be a non-empty list")
    image: bytes | None = None
    texts: list[str] = []
    for part in messages[-1].get("content") or []:
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if not url.startswith("data:image/") or ";base64," not in url:
                raise HTTPException(status_code=400, detail="only base64 data: image URLs are served")
            try:
                image = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise HTTPException(status_code=400, detail=f"bad base64 image: {exc}") from exc
            if len(image) > MAX_IMAGE_BYTES:
                raise HTTPException(status_code=413, detail="image too large")
    if image is None:
        raise HTTPException(status_code=400, detail="the last message has no image_url part")
    return image, "\n".join(texts)


class LoopbackServer:
    """Runs an app with uvicorn on 127.0.0.1 in a background thread; `with LoopbackServer(app) as url: ...`."""

    def __init__(self, app: Any, port: int = 0) -> None:
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"loopback server on port {self.port} did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
