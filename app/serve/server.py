"""The OpenAI-compatible HTTP server (Starlette) over one loaded engine and the chat session.

Every chat request becomes a `Session.reply()` on the same session code the TUI and `ask` use
(template, reasoning split, budget, loop guard), run in a worker thread through the model queue
(qwq_chat.app.serve.queue). The session's events are translated to OpenAI objects here: reasoning
to `reasoning_content`, the answer to `content`, tool calls to `tool_calls`. docs/serve.md
describes the endpoints, the extensions (`reasoning_budget`, `finish_details`) and the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from qwq_chat.app.engine_protocol import Chunk, Engine
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import AnswerDelta, Done, Event, ReasoningDelta, Stats, ToolCall
from qwq_chat.app.serve.grammar import grammar_for
from qwq_chat.app.serve.protocol import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    chunk,
    completion,
    completion_id,
    parse,
    text_completion,
    to_messages,
    tool_call_out,
    usage_chunk,
)
from qwq_chat.app.serve.queue import Job, ModelQueue
from qwq_chat.app.session import Session
from qwq_chat.app.store import Store
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

log = logging.getLogger(__name__)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class ServeOptions:
    """How the server behaves (from `qwq-chat serve`'s options)."""

    model_id: str
    api_key: str | None = None
    max_waiting: int = 16
    max_body_bytes: int = 4 * 1024 * 1024
    save: bool = False  # keep served conversations in the chat history


class ClientTools:
    """The tools a client declared: offered to the model, run by the client (never here)."""

    def __init__(self, schemas: list[dict[str, Any]]) -> None:
        self._schemas = schemas

    def schemas(self) -> list[dict[str, Any]]:
        return self._schemas

    def run(self, call: ToolCall) -> Any:  # the session never runs them: max_tool_rounds=0
        raise RuntimeError("client tools are run by the client")

    def __len__(self) -> int:
        return len(self._schemas)


class StopMatcher:
    """Cuts text at the first stop sequence, holding back what may be the start of one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if self.hit or not self.stops:
            return "" if self.hit else text
        text = self.held + text
        self.held = ""
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if found:
            self.hit = True
            return text[: min(found)]
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:n]):
                    keep = n
                    break
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return "" if self.hit else held


class ChatTranslator:
    """Session events -> OpenAI deltas; also collects the whole reply for a non-streamed answer."""

    def __init__(self, stops: list[str], on_stop: Callable[[], None]) -> None:
        self.stop = StopMatcher(stops)
        self.on_stop = on_stop
        self.reasoning = ""
        self.content = ""
        self.calls: list[ToolCall] = []
        self.stats: Stats | None = None
        self.done: Done | None = None

    def feed(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, ReasoningDelta):
            self.reasoning += event.text
            return [{"reasoning_content": event.text}]
        if isinstance(event, AnswerDelta):
            return self._answer(event.text)
        if isinstance(event, ToolCall):
            if not event.name:  # not valid JSON: the client sees what the model wrote
                return self._answer(f"<tool_call>{event.raw}</tool_call>")
            self.calls.append(event)
            return [{"tool_calls": [tool_call_out(event, len(self.calls) - 1)]}]
        if isinstance(event, Stats):
            self.stats = event
        elif isinstance(event, Done):
            self.done = event
            tail = self.stop.flush()
            if tail:
                self.content += tail
                return [{"content": tail}]
        return []

    def _answer(self, text: str) -> list[dict[str, Any]]:
        was_hit = self.stop.hit
        text = self.stop.feed(text)
        if self.stop.hit and not was_hit:
            self.on_stop()
        if not text:
            return []
        self.content += text
        return [{"content": text}]

    @property
    def error(self) -> str | None:
        return self.done.error if self.done is not None else "the generation ended early"

    def finish_reason(self) -> str:
        reason = self.done.finish_reason if self.done is not None else "stop"
        if self.calls:
            return "tool_calls"
        if self.stop.hit or reason in ("stop", "reasoning_budget", "cancelled"):
            return "stop"
        if reason == "reasoning_loop":
            return "stop" if self.content else "length"
        return "length" if reason == "length" else "stop"

    def details(self) -> dict[str, Any] | None:
        """Why a reasoning control stepped in (an extension field: `finish_details`)."""
        done = self.done
        if done is None or (done.detail is None and not done.finish_reason.startswith("reasoning")):
            return None
        return {"reason": done.finish_reason, "detail": done.detail}


def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _engine_error(message: str) -> ApiError:
    if "fits the context" in message or "context" in message and "n_ctx" in message:
        return ApiError(400, message, code="context_length_exceeded")
    return ApiError(500, f"generation failed: {message}", type_="server_error")


Handler = Callable[[Request], Awaitable[Response]]


class Server:
    """The ASGI app (`.app`) for one engine; construct it inside the event loop's process."""

    def __init__(
        self, engine: Engine, settings: Any, options: ServeOptions, store: Store | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.options = options
        self.store = store  # the chat history, only with --save
        self.queue = ModelQueue(options.max_waiting)
        self.created = int(time.time())
        routes = [
            Route("/health", self._guard(self.health, auth=False), methods=["GET"]),
            Route("/v1/models", self._guard(self.models), methods=["GET"]),
            Route("/v1/chat/completions", self._guard(self.chat), methods=["POST"]),
            Route("/v1/completions", self._guard(self.completions), methods=["POST"]),
        ]
        self.app = Starlette(
            routes=routes, exception_handlers={HTTPException: self._http_error}
        )  # fmt: skip

    # -- plumbing ----------------------------------------------------------------------------

    def _guard(self, handler: Handler, auth: bool = True) -> Handler:
        """API key check and errors as OpenAI error objects (4xx for the client's mistakes)."""

        async def guarded(request: Request) -> Response:
            try:
                if auth:
                    self._authorize(request)
                return await handler(request)
            except ApiError as exc:
                return _error_response(exc)
            except UserError as exc:  # e.g. the template refused this conversation
                return _error_response(ApiError(400, str(exc)))
            except Exception:  # a bug of ours: logged, answered without a traceback
                log.exception("request failed")
                return _error_response(
                    ApiError(500, "internal server error (see the log)", type_="server_error")
                )

        return guarded

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return _error_response(ApiError(exc.status_code, str(exc.detail), type_=kind))

    def _authorize(self, request: Request) -> None:
        key = self.options.api_key
        if not key:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8"), key.encode("utf-8")
        )
        if not ok:
            raise ApiError(
                401, "invalid or missing API key (send Authorization: Bearer KEY)",
                type_="authentication_error", code="invalid_api_key",
            )  # fmt: skip

    async def _read_json(self, request: Request) -> Any:
        cap = self.options.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            raise ApiError(413, f"the request body is larger than {cap} bytes", code="too_large")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > cap:
                raise ApiError(
                    413, f"the request body is larger than {cap} bytes", code="too_large"
                )
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise ApiError(400, "the request body is nested too deeply") from None

    async def _watch_disconnect(self, request: Request, on_gone: Callable[[], None]) -> None:
        """For non-streamed answers: the body is read, so the next message is the hang-up."""
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                on_gone()
                return

    # -- endpoints ---------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "model": self.options.model_id, "queued": self.queue.pending}
        )

    async def models(self, request: Request) -> Response:
        model = {
            "id": self.options.model_id, "object": "model", "created": self.created,
            "owned_by": "qwq-chat",
        }  # fmt: skip
        return JSONResponse({"object": "list", "data": [model]})

    async def chat(self, request: Request) -> Response:
        req: ChatRequest = parse(ChatRequest, await self._read_json(request))
        req.check_supported()
        messages = to_messages(req)
        stops = req.stops()
        session = self._session(req, grammar_for(req.response_format, self.engine.name))
        ticket = self.queue.reserve()
        cid = completion_id()
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            stream = self._stream_chat(session, messages, stops, ticket, cid, include_usage)
            return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
        translator = ChatTranslator(stops, session.cancel)
        gone = await self._run(
            request, ticket, lambda: session.reply(messages), session.cancel, translator.feed
        )
        if gone:
            return Response(status_code=499)
        if translator.error:
            raise _engine_error(translator.error)
        return JSONResponse(
            completion(
                cid, self.options.model_id, translator.content, translator.reasoning,
                translator.calls, translator.finish_reason(), translator.stats,
                translator.details(),
            )
        )  # fmt: skip

    async def completions(self, request: Request) -> Response:
        req: CompletionRequest = parse(CompletionRequest, await self._read_json(request))
        req.check_supported()
        prompt = req.text()
        if not prompt:
            raise ApiError(400, "the prompt is empty", param="prompt")
        if self.engine.name != "llama":
            raise ApiError(400, f"raw prompts need the llama backend (this is {self.engine.name})")
        sampling = req.sampling(self.settings.sampling)
        max_tokens = req.max_tokens or 16
        stop = StopMatcher(req.stops())
        engine = self.engine
        cid = completion_id("cmpl")
        model = self.options.model_id
        state: dict[str, Any] = {"text": "", "finish": None, "stats": None}

        def produce() -> Any:
            return engine.stream([], sampling, max_tokens, raw_prompt=prompt)

        def feed(item: Chunk) -> list[str]:
            out = []
            if item.text:
                text = stop.feed(item.text)
                if stop.hit:
                    engine.cancel()
                if text:
                    out.append(text)
            if item.finish_reason:
                tail = stop.flush()
                if tail:
                    out.append(tail)
                state["finish"] = "stop" if stop.hit or item.finish_reason != "length" else "length"
                state["stats"] = item.stats
            state["text"] += "".join(out)
            return out

        ticket = self.queue.reserve()
        if req.stream:

            async def stream() -> AsyncIterator[str]:
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                async for pieces in self._job_stream(ticket, produce, engine.cancel, feed):
                    for text in pieces:
                        yield _sse(text_completion(cid, model, text, None, None, True))
                yield _sse(text_completion(cid, model, "", state["finish"], None, True))
                if include_usage:
                    body = text_completion(cid, model, "", None, state["stats"], True)
                    body["choices"] = []
                    yield _sse(body)
                yield "data: [DONE]\n\n"

            return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)
        gone = await self._run(request, ticket, produce, engine.cancel, feed)
        if gone:
            return Response(status_code=499)
        body = text_completion(cid, model, state["text"], state["finish"], state["stats"], False)
        return JSONResponse(body)

    # -- generation --------------------------------------------------------------------------

    def _session(self, req: ChatRequest, grammar: Any) -> Session:
        raw_tools = None
        if req.tools and req.tool_choice != "none":
            raw_tools = [tool.model_dump(exclude_none=True) for tool in req.tools]
        store = self.store if self.store is not None else Store(":memory:")
        session = Session(
            store,
            self.engine,
            sampling=req.sampling(self.settings.sampling),
            limits=req.limits(self.settings.limits),
            tools=ClientTools(raw_tools) if raw_tools else None,
            max_tool_rounds=0,
            model_name=self.options.model_id,
        ).with_reasoning(self.settings.reasoning)
        if req.reasoning_effort is not None:
            effort = "low" if req.reasoning_effort == "minimal" else req.reasoning_effort
            session.set_reasoning_effort(effort)  # type: ignore[arg-type]
            if req.reasoning_budget is not None:  # an explicit budget wins over the effort
                session.limits = session.limits.replace(reasoning_budget=req.reasoning_budget)
        session.answer_grammar = grammar
        return session

    async def _run(
        self,
        request: Request,
        ticket: Any,
        produce: Callable[[], Any],
        cancel: Callable[[], None],
        feed: Callable[[Any], Any],
    ) -> bool:
        """Run a job to its end for a non-streamed answer; True when the client hung up."""
        job: Job | None = None
        gone = False
        waiting = asyncio.current_task()

        def on_gone() -> None:
            nonlocal gone
            gone = True
            if job is not None:
                job.cancel()
            elif waiting is not None:
                waiting.cancel()

        watcher = asyncio.create_task(self._watch_disconnect(request, on_gone))
        try:
            await ticket.acquire()
            job = Job(produce, cancel)
            job.start(ticket.close)
            async for item in job.events():
                feed(item)
        except asyncio.CancelledError:
            if not gone:
                raise
        finally:
            watcher.cancel()
            if job is None:
                ticket.close()
            else:
                job.cancel()
        return gone

    async def _job_stream(
        self,
        ticket: Any,
        produce: Callable[[], Any],
        cancel: Callable[[], None],
        feed: Callable[[Any], Any],
    ) -> AsyncIterator[Any]:
        """Run a job for a streamed answer; a hang-up cancels this generator, and so the job."""
        job: Job | None = None
        try:
            await ticket.acquire()
            job = Job(produce, cancel)
            job.start(ticket.close)
            async for item in job.events():
                yield feed(item)
        finally:
            if job is None:
                ticket.close()
            else:
                job.cancel()

    async def _stream_chat(
        self,
        session: Session,
        messages: list[Any],
        stops: list[str],
        ticket: Any,
        cid: str,
        include_usage: bool,
    ) -> AsyncIterator[str]:
        model = self.options.model_id
        translator = ChatTranslator(stops, session.cancel)
        first = True
        events = self._job_stream(
            ticket, lambda: session.reply(messages), session.cancel, translator.feed
        )
        try:
            async for deltas in events:
                if first:  # the role first, once the model is ours (the queue may have waited)
                    first = False
                    yield _sse(chunk(cid, model, {"role": "assistant", "content": ""}))
                for delta in deltas:
                    yield _sse(chunk(cid, model, delta))
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()
        if translator.done is None or translator.done.error:
            error = _engine_error(translator.error or "the generation ended early")
            yield _sse(error.body())
            yield "data: [DONE]\n\n"
            return
        final = chunk(cid, model, {"content": ""}, translator.finish_reason())
        details = translator.details()
        if details:
            final["choices"][0]["finish_details"] = details
        yield _sse(final)
        if include_usage:
            yield _sse(usage_chunk(cid, model, translator.stats))
        yield "data: [DONE]\n\n"
