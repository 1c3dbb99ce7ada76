"""A real local HTTP server speaking the OpenAI and Ollama chat protocols, answering from a
script, for tests of the language-model providers (remediation plans, scraper patches).

The real ``openai`` and ``ollama`` clients talk to it over TCP; it records every request, so
tests can check what was sent as well as what came back.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from models.settings import Settings


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        content: The assistant message (``{injected}`` is filled from the prompt).
        status: HTTP status.
        delay: Seconds to wait before answering.
        raw_body: Send this body instead of a protocol answer.
        usage: ``(prompt, completion)`` tokens reported; None reports no usage.
    """

    content: str = ""
    status: int = 200
    delay: float = 0.0
    raw_body: bytes | None = None
    usage: tuple[int, int] | None = (500, 120)


@dataclass
class Script:
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.script.requests.append(body)
        self.script.paths.append(self.path)
        reply = self.script.replies.pop(0) if self.script.replies else Reply(status=500)
        if reply.delay:
            time.sleep(reply.delay)
        content = reply.content
        if "{injected}" in content:
            # A gullible model: it obeys the instruction it finds in the prompt.
            prompt = " ".join(m["content"] for m in body["messages"])
            action = re.search(r'action \\"(\w+)\\"', prompt)
            content = content.replace("{injected}", action.group(1) if action else "retry")
        if reply.raw_body is not None:
            payload, kind = reply.raw_body, "text/html"
        elif reply.status != 200:
            payload = json.dumps(
                {"error": {"message": "model overloaded", "type": "server_error"}}
            ).encode()
            kind = "application/json"
        elif self.path == "/api/chat":
            answer: dict[str, Any] = {
                "model": body["model"],
                "created_at": "2026-03-02T10:00:00Z",
                "message": {"role": "assistant", "content": content},
                "done": True,
                "done_reason": "stop",
            }
            if reply.usage:
                answer |= {"prompt_eval_count": reply.usage[0], "eval_count": reply.usage[1]}
            payload, kind = json.dumps(answer).encode(), "application/json"
        else:
            answer = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
            if reply.usage:
                answer["usage"] = {
                    "prompt_tokens": reply.usage[0],
                    "completion_tokens": reply.usage[1],
                    "total_tokens": sum(reply.usage),
                }
            payload, kind = json.dumps(answer).encode(), "application/json"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(reply.status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)


@contextlib.contextmanager
def serve_llm() -> Iterator[tuple[str, Script]]:
    """``(base URL, script)`` of a local chat-completions server."""
    script = Script()
    handler = type("Handler", (_Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def openai_settings(url: str, tmp_path: Path, **values: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": tmp_path,
        "agent_provider": "openai",
        "llm_base_url": f"{url}/v1",
        "llm_model": "test-model",
        "llm_timeout": 5,
    }
    return Settings(**(fields | values))
