"""Client for OpenAI-compatible chat completions (vLLM, SGLang, hosted APIs), images as data URIs.

Requests of a batch go out concurrently (asyncio + httpx, at most `concurrency` in flight),
each with a timeout; connection errors, timeouts, 429 and 5xx are retried with exponential
backoff (`backoff_s * 2**attempt`, honouring Retry-After), other 4xx are not (resending a
bad request cannot help). Answers are stored in a persistent cache before being returned,
so a crash after the request never costs a second request on the re-run.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from captioners.config import OpenAIConfig
from captioners.request_cache import RequestCache
from captioners.vlm import VlmReply, VlmRequest
from flywheel.config import ConfigError

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIVlm:
    """Answers batches of requests against one endpoint; `sent` counts requests actually sent."""

    def __init__(self, cfg: OpenAIConfig, cache_dir: str | Path) -> None:
        if not cfg.base_url:
            raise ConfigError("openai.base_url is not set (e.g. http://127.0.0.1:8000/v1)")
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.cache = RequestCache(Path(cfg.cache_dir or cache_dir) / "requests.sqlite")
        self.name = f"openai:{cfg.model}"
        self.sent = 0
        self.retried = 0

    def generate(self, requests: Sequence[VlmRequest]) -> list[VlmReply]:
        return asyncio.run(self._all(requests))

    async def _all(self, requests: Sequence[VlmRequest]) -> list[VlmReply]:
        limit = asyncio.Semaphore(self.cfg.concurrency)
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=self.cfg.concurrency, max_keepalive_connections=self.cfg.concurrency)
        async with httpx.AsyncClient(timeout=self.cfg.timeout_s, headers=headers, limits=limits) as client:
            return list(await asyncio.gather(*(self._one(client, limit, r) for r in requests)))

    async def _one(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, req: VlmRequest) -> VlmReply:
        key = req.key(self.cfg.model, self.cfg.temperature)
        hit = self.cache.get(key)
        if hit is not None:
            return VlmReply(text=hit[0], output_tokens=hit[1], cached=True)
        body = self._body(req)
        error = "not sent"
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                self.retried += 1
            async with limit:
                try:
                    self.sent += 1
                    resp = await client.post(self.url, json=body)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    error, wait = f"{type(exc).__name__}: {exc}", None
                else:
                    if resp.status_code == 200:
                        return self._answer(resp, key)
                    error = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    if resp.status_code not in _RETRY_STATUS:
                        return VlmReply(text=None, error=error)
                    wait = _retry_after(resp)
            if attempt < self.cfg.retries:
                await asyncio.sleep(wait if wait is not None else self.cfg.backoff_s * (2**attempt))
        return VlmReply(text=None, error=f"gave up after {self.cfg.retries + 1} attempts: {error}")

    def _body(self, req: VlmRequest) -> dict[str, Any]:
        uri = "data:image/png;base64," + base64.b64encode(req.image_png).decode("ascii")
        return {
            "model": self.cfg.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": uri}},
                        {"type": "text", "text": req.prompt},
                    ],
                }
            ],
            "max_tokens": req.max_new_tokens,
            "temperature": self.cfg.temperature,
        }

    def _answer(self, resp: httpx.Response, key: str) -> VlmReply:
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"] or ""
            tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return VlmReply(text=None, error=f"malformed chat-completions answer ({type(exc).__name__}: {exc})")
        self.cache.put(key, text, tokens)
        return VlmReply(text=text, output_tokens=tokens)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return min(60.0, float(value)) if value else None
    except ValueError:
        return None
