"""Labeler backend: any OpenAI-compatible HTTP server (vLLM `serve`, llama.cpp server, OpenAI).

Stdlib only (urllib + threads). Each request runs its two stages on one worker thread; up to
`api.concurrency` requests are in flight. A 429, a 5xx, a timeout, a dropped connection, a body
that is not JSON or lacks the logprobs is retried with exponential backoff; after
`api.max_retries` retries the request gets a failure result (`failed=True`) naming the last
error, which the stage writes to failures.jsonl. The API key is read from the environment
variable the config names and goes only into the Authorization header: never into errors, logs
or results. [L07]
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from rlaif.config import ConfigError, LabelerSettings
from rlaif.labelers.base import JudgeRequest, JudgeResult, decide, read_choices_with
from rlaif.labelers.chat import request_text

RETRY_AFTER_CAP_S = 60.0


class RequestFailed(RuntimeError):
    """A request that failed for good (a 4xx other than 429, or every retry used)."""


class _Retryable(RuntimeError):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIApiLabeler:
    backend = "openai_api"

    def __init__(self, settings: LabelerSettings, sleep=time.sleep):
        self.settings, self.api, self.model = settings, settings.api, settings.model
        self._sleep = sleep
        self.pairs_per_call = 4 * self.api.concurrency  # two requests per pair keep every thread busy
        self._key = None
        if self.api.api_key_env:
            self._key = os.environ.get(self.api.api_key_env)
            if not self._key:
                raise ConfigError(
                    f"label.labeler.api.api_key_env: environment variable {self.api.api_key_env} is not set"
                )
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "failed": 0}

    def judge(self, requests: list[JudgeRequest]) -> list[JudgeResult]:
        with ThreadPoolExecutor(max_workers=self.api.concurrency) as pool:
            return list(pool.map(self._judge_one, requests))

    def _judge_one(self, req: JudgeRequest) -> JudgeResult:
        rationale = None
        try:
            if req.max_rationale_tokens > 0:
                rationale = self._rationale(req)
            reading = read_choices_with(req.choices, lambda more: self._answer_logprobs(req, rationale, more))
        except RequestFailed as e:
            self._count("failed")
            return JudgeResult(rationale and rationale.strip(), None, None, f"failed: {e}", failed=True)
        return decide(
            reading.masses,
            reading.found or not req.undecided_outside_top_k,
            self.settings.top_logprobs,
            rationale and rationale.strip(),
            [token for token, _ in reading.top],
        )

    # --- the two stages ---
    def _rationale(self, req: JudgeRequest) -> str:
        stop = [req.cue.strip()]  # a model that writes the answer key itself stops before it
        temperature = self.settings.rationale_temperature
        if self.api.endpoint == "completions":
            body = {
                "prompt": self._plain(req),
                "max_tokens": req.max_rationale_tokens,
                "stop": stop,
                "temperature": temperature,
            }
            reply = self._post("completions", body, lambda r: r["choices"][0]["text"])
        else:
            body = {
                "messages": self._messages(req),
                "max_tokens": req.max_rationale_tokens,
                "stop": stop,
                "temperature": temperature,
            }
            reply = self._post(
                "chat/completions", {**body, **self._continue_flags()}, lambda r: r["choices"][0]["message"]["content"]
            )
        if not isinstance(reply, str):
            raise RequestFailed(f"rationale is {type(reply).__name__}, not text")
        return reply

    def _answer_logprobs(self, req: JudgeRequest, rationale: str | None, more: str = "") -> dict[str, float] | None:
        """token -> logprob of the top tokens right after `Preferred Summary=` and `more` (the tokens
        of a longer choice read so far [L08]); None where the server cannot continue a given text
        (a chat endpoint without continue_final_message)."""
        k = self.settings.top_logprobs
        if self.api.endpoint == "completions":
            prompt = self._plain(req) + (rationale + req.cue if rationale is not None else "") + more
            body = {"prompt": prompt, "max_tokens": 1, "temperature": 0.0, "logprobs": k}
            return self._post(
                "completions", body, lambda r: _as_logprob_map(r["choices"][0]["logprobs"]["top_logprobs"][0])
            )
        if more and not self.api.continue_final_message:
            return None
        messages = self._messages(req, rationale, answering=True, more=more)
        body = {"messages": messages, "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": k}
        return self._post(
            "chat/completions",
            {**body, **self._continue_flags()},
            lambda r: {e["token"]: e["logprob"] for e in r["choices"][0]["logprobs"]["content"][0]["top_logprobs"]},
        )

    def _messages(
        self, req: JudgeRequest, rationale: str | None = None, answering: bool = False, more: str = ""
    ) -> list[dict]:
        messages = [{"role": "system", "content": req.system}, {"role": "user", "content": req.user}]
        if self.api.continue_final_message:
            turn = req.assistant_prefix + (rationale + req.cue if answering and rationale is not None else "") + more
            return messages + [{"role": "assistant", "content": turn}]
        if answering and rationale is not None:
            messages += [
                {"role": "assistant", "content": rationale.strip()},
                {"role": "user", "content": req.answer_instruction},
            ]
        return messages

    def _continue_flags(self) -> dict:
        return (
            {"continue_final_message": True, "add_generation_prompt": False} if self.api.continue_final_message else {}
        )

    @staticmethod
    def _plain(req: JudgeRequest) -> str:
        """The completions endpoint's prompt: the request as plain text (no tokenizer, no template)."""
        return request_text(None, req)

    # --- transport ---
    def _post(self, path: str, body: dict, parse):
        """POST and parse, retrying what may be transient; RequestFailed when out of retries."""
        body = {"model": self.model, **body}
        url = f"{self.api.base_url.rstrip('/')}/{path}"
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        last = ""
        for attempt in range(self.api.max_retries + 1):
            if attempt:
                self._count("retries")
            self._count("requests")
            try:
                return self._once(url, body, headers, parse)
            except _Retryable as e:
                last = str(e)
                if attempt == self.api.max_retries:
                    break
                delay = self.api.backoff_s * 2**attempt
                if e.retry_after is not None:
                    delay = max(delay, min(e.retry_after, RETRY_AFTER_CAP_S))
                self._sleep(delay)
        raise RequestFailed(f"{url}: {last} (after {self.api.max_retries} retries)")

    def _once(self, url: str, body: dict, headers: dict, parse):
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.api.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode("utf-8", "replace")
            if e.code == 429 or e.code >= 500:
                raise _Retryable(f"HTTP {e.code} {detail}", _retry_after(e.headers.get("Retry-After"))) from None
            raise RequestFailed(f"{url}: HTTP {e.code} {detail}") from None
        except TimeoutError:
            raise _Retryable(f"timed out after {self.api.timeout_s}s") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.api.timeout_s}s") from None
            raise _Retryable(f"connection error: {type(e).__name__}: {reason}") from None
        try:
            return parse(json.loads(raw))
        except json.JSONDecodeError:
            raise _Retryable(f"malformed JSON in the response: {raw[:80]!r}") from None
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise _Retryable(
                f"response lacks the expected field ({type(e).__name__}: {e}); does the server return logprobs?"
            ) from None

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1


def _as_logprob_map(top) -> dict[str, float]:
    if not isinstance(top, dict):
        raise TypeError("top_logprobs is not a mapping")
    return top


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
