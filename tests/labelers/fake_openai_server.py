"""A real OpenAI-compatible HTTP server on 127.0.0.1 for the openai_api backend's tests.

It answers /v1/chat/completions and /v1/completions. A request with logprobs gets the top
tokens after `Preferred Summary=`: the candidate whose line starts with `GOOD` gets 0.8, the other
0.1 (0.45 each when neither does), plus a filler token. Faults are injected in order from
`faults` (one per request): "timeout" (answers after the client gave up), "429", "500", "drop"
(closes the connection), "badjson", "nologprobs". Text containing FAIL-ALWAYS always gets a 500;
text containing NO-DIGITS gets top tokens without 1 or 2; ONE-CHOICE, top tokens with 1 and not 2.

A d-RLAIF rating request (text with the rating instruction, rlaif.labelers.prompts.RATING_INSTRUCTION) is answered as a model whose
tokenizer spells every number digit by digit: after the answer prefix the top tokens are single
digits (RATING_GOOD when the summary starts with GOOD, else RATING_OTHER), and after a text that
ends in `Rating: 1` they are AFTER_ONE, where `0` makes the 10.
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rlaif.labelers.prompts import RATING_INSTRUCTION

RATING_GOOD = [("9", 0.4), ("1", 0.3), ("8", 0.2), ("The", 0.05)]
RATING_OTHER = [("2", 0.5), ("3", 0.2), ("1", 0.1), ("Summary", 0.1)]
AFTER_ONE = [("0", 0.6), ("<|eot_id|>", 0.3), (".", 0.05)]


class FakeOpenAIServer:
    def __init__(self, delay_s: float = 0.0, stall_s: float = 1.0):
        self.delay_s, self.stall_s = delay_s, stall_s
        self.faults: collections.deque[str] = collections.deque()
        self.requests: list[dict] = []  # {"path", "body", "authorization"}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                if self.path not in ("/v1/chat/completions", "/v1/completions"):
                    server._send(self, 404, b'{"error": {"message": "no such route"}}')
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(
                        {"path": self.path, "body": body, "authorization": self.headers.get("Authorization")}
                    )
                    fault = server.faults.popleft() if server.faults else None
                time.sleep(server.delay_s)
                server._answer(self, body, fault)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- answers ---
    def _answer(self, h: BaseHTTPRequestHandler, body: dict, fault: str | None) -> None:
        text = body["prompt"] if "prompt" in body else "\n".join(m["content"] for m in body["messages"])
        if fault == "timeout":
            time.sleep(self.stall_s)
        if fault in ("429", "500") or "FAIL-ALWAYS" in text:
            code = 429 if fault == "429" else 500
            self._send(h, code, json.dumps({"error": {"message": "injected"}}).encode(), {"Retry-After": "0"})
            return
        if fault == "drop":
            h.close_connection = True
            h.wfile.flush()
            h.connection.shutdown(2)
            return
        if fault == "badjson":
            self._send(h, 200, b'{"choices": [{"text": "unterminated')
            return
        chat = "messages" in body
        if not (body.get("logprobs") or body.get("top_logprobs")):
            reply = "Summary 1 looks more accurate." if "Summary 1 - GOOD" in text else "Summary 2 looks more accurate."
            choice = {"message": {"role": "assistant", "content": " " + reply}} if chat else {"text": " " + reply}
        else:
            top = self._top(text)
            if fault == "nologprobs":
                choice = {"message": {"role": "assistant", "content": "1"}} if chat else {"text": "1"}
            elif chat:
                choice = {
                    "message": {"role": "assistant", "content": top[0][0]},
                    "logprobs": {
                        "content": [
                            {
                                "token": top[0][0],
                                "logprob": top[0][1],
                                "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top],
                            }
                        ]
                    },
                }
            else:
                choice = {"text": top[0][0], "logprobs": {"tokens": [top[0][0]], "top_logprobs": [dict(top)]}}
        self._send(h, 200, json.dumps({"id": "x", "choices": [{"index": 0, **choice}]}).encode())

    @staticmethod
    def _top(text: str) -> list[tuple[str, float]]:
        # a d-RLAIF rating: its instruction, not any "1 to 10" (a Reddit post may say "on a scale from 1 to 10")
        if RATING_INSTRUCTION in text:
            top = AFTER_ONE if text.endswith("Rating: 1") else RATING_GOOD if "Summary - GOOD" in text else RATING_OTHER
            return [(t, math.log(p)) for t, p in top]
        if "NO-DIGITS" in text:
            return [("The", math.log(0.6)), ("Both", math.log(0.3))]
        if "ONE-CHOICE" in text:
            return [("1", math.log(0.6)), ("The", math.log(0.3)), ("A", math.log(0.05))]
        # the last pair shown is the one to judge (few-shot exemplars come before it)
        sample = text[text.rfind("Summary 1 - ") :]
        p1, p2 = (
            (0.8, 0.1)
            if sample.startswith("Summary 1 - GOOD")
            else (0.1, 0.8)
            if "Summary 2 - GOOD" in sample
            else (0.45, 0.45)
        )
        return sorted([("1", math.log(p1)), (" 2", math.log(p2)), ("The", math.log(0.05))], key=lambda t: -t[1])

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, payload: bytes, headers: dict | None = None) -> None:
        try:
            h.send_response(code)
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left
