"""One call to an OpenAI-compatible chat endpoint, shared by the core's LLM users (prompt track, enhancer)."""

from __future__ import annotations

import httpx


def chat_completion(
    client: httpx.Client,
    base_url: str,
    model: str,
    system: str,
    user: str,
    *,
    api_key: str | None = None,
    temperature: float = 0.2,
    timeout_s: float = 60.0,
) -> str:
    """The assistant message's text for one system + user exchange; HTTP errors raise httpx's own."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    resp = client.post(
        f"{base_url.rstrip('/')}/chat/completions",
        headers=headers,
        timeout=timeout_s,
        json={
            "model": model,
            "temperature": temperature,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        },
    )
    resp.raise_for_status()
    return resp.json()["choices"][0]["message"]["content"]
