"""``Coalescer``: the requests that reach a gateway together for one model version go upstream as ONE call.

How it works. ``RemoteModel.predict`` (one per caller: the gateway's ``DataPlane`` has already admitted the
request, checked its limits and picked its version, canary split included) turns each instance into a
``BatchItem`` carrying the caller's ``traceparent`` and request id, and hands the items with the caller's
deadline to ``Coalescer.run``. That is the server's ``BatchingRunner`` (``model/batching.py``) around an
"upstream model" whose ``predict`` is one ``modelwire.v1.BatchPredictor/PredictBatch`` call, so the policy
is the server's own: an idle hop sends at once (concurrency 1 pays no wait), a busy one (``max_calls``
calls in flight) queues, and the next call takes everything that arrived meanwhile, up to ``max_batch``;
under load the driver yields a few loop cycles so that requests already on their way join.

- **Deadline**: the call's timeout is the earliest deadline of its items; an item whose deadline already
  passed is not sent. When the call fails DEADLINE_EXCEEDED, a caller with time left sends again
  (``RemoteModel``), so a neighbour's short deadline costs it one more call, not its answer.
- **Errors**: an item's own error comes back on that item only; a failure of the call as a whole
  (unreachable, refused credentials, overload, the deadline) is ``CallFailed`` for every item of it, which
  ``RemoteModel`` raises, as when the caller's own call failed.
- **Cancellation**: a caller that leaves (client gone, its deadline) cancels its items; they are skipped if
  not sent yet, and otherwise their answers are dropped.
- A model service without ``BatchPredictor`` (an older release) answers UNIMPLEMENTED: the items come back
  ``Unsupported`` and ``RemoteModel`` sends them one call per request, as before, from then on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelwire.client._grpc import _output
from modelwire.errors import DeadlineExceededError, InternalError, ModelwireError, error_from_code
from modelwire.model.base import Model
from modelwire.model.batching import BatchingRunner, BatchPolicy
from modelwire.model.runner import ModelRunner
from modelwire.protocols.grpc._generated.modelwire.v1 import batch_pb2 as pb

__all__ = [
    "UNSUPPORTED",
    "CallFailed",
    "Coalescer",
    "Item",
    "Unsupported",
    "UpstreamMissing",
    "error_from_proto",
]


@dataclass(frozen=True, slots=True)
class Item:
    """One instance of one caller: its message (text or MessagePack, trace ids) and its deadline."""

    message: Any  # pb.BatchItem, ``id`` set when sent
    deadline: float | None  # time.monotonic() clock


@dataclass(frozen=True, slots=True)
class CallFailed:
    """The upstream call carrying this item failed as a whole."""

    error: ModelwireError


class UpstreamMissing(Exception):
    """Raised by a ``Send`` when the model service does not know ``BatchPredictor`` (UNIMPLEMENTED)."""


@dataclass(frozen=True, slots=True)
class Unsupported:
    """The model service has no ``BatchPredictor``: send this item the old way."""


UNSUPPORTED = Unsupported()


def error_from_proto(error: Any) -> ModelwireError:
    """A ``BatchError`` as the ``ModelwireError`` it stands for (what a unary status would have given)."""
    return error_from_code(
        error.code or "INTERNAL",
        error.message,
        reason=error.reason or None,
        field=error.field or None,
        retry_after_s=error.retry_after_s if error.HasField("retry_after_s") else None,
        details={"error_id": error.error_id} if error.error_id else None,
    )


Send = Callable[[Any, float | None, tuple[tuple[str, str], ...]], Any]
"""``(BatchRequest, timeout, metadata) -> awaitable BatchResponse``: raises ``ModelwireError``."""


class _Upstream(Model):
    """The "model" the batching runner calls: its ``predict`` is one ``PredictBatch``."""

    def __init__(
        self, name: str, version: str, send: Send, result: Callable[[Mapping[str, Any]], Any]
    ) -> None:
        super().__init__(name, version)
        self._send = send
        self._result = result
        self.supported = True

    async def predict(self, batch: Sequence[Item]) -> list[Any]:
        if not self.supported:
            return [UNSUPPORTED] * len(batch)
        now = time.monotonic()
        results: list[Any] = [None] * len(batch)
        request = pb.BatchRequest(model=self.name, version=self.version)
        deadline: float | None = None
        sent: list[int] = []
        for i, item in enumerate(batch):
            if item.deadline is not None and item.deadline <= now:
                results[i] = CallFailed(DeadlineExceededError("no time left to call the model services"))
                continue
            if item.deadline is not None and (deadline is None or item.deadline < deadline):
                deadline = item.deadline
            message = request.items.add()
            message.CopyFrom(item.message)
            message.id = str(i)
            sent.append(i)
        if not sent:
            return results
        first = batch[sent[0]].message
        metadata = (("traceparent", first.traceparent), ("x-request-id", first.request_id))
        timeout = None if deadline is None else deadline - now
        try:
            reply = await self._send(request, timeout, metadata if first.traceparent else ())
        except UpstreamMissing:
            self.supported = False
            for i in sent:
                results[i] = UNSUPPORTED
            return results
        except ModelwireError as exc:
            for i in sent:
                results[i] = CallFailed(exc)
            return results
        expected = set(sent)
        for answer in reply.results:
            index = int(answer.id) if answer.id.isdigit() else -1
            if index not in expected:
                error = InternalError(f"a model service answered an unknown item ({answer.id!r:.20})")
                return [CallFailed(error) if i in expected else r for i, r in enumerate(results)]
            expected.discard(index)
            if answer.WhichOneof("result") == "error":
                results[index] = error_from_proto(answer.error)
            else:
                results[index] = self._result(_output(answer.output))
        for i in expected:
            results[i] = CallFailed(InternalError("a model service left an item unanswered"))
        return results


class Coalescer:
    """One model version's queue of items on their way upstream, sent as ``PredictBatch`` calls.

    >>> results = await coalescer.run([Item(message, deadline)])  # one result, error or marker per item
    """

    def __init__(
        self,
        name: str,
        version: str,
        send: Send,
        result: Callable[[Mapping[str, Any]], Any],
        *,
        max_batch: int,
        max_calls: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._upstream = _Upstream(name, version, send, result)
        policy = BatchPolicy(max_batch_size=max_batch, max_delay_s=0.0, max_concurrency=max_calls)
        self._runner = BatchingRunner(ModelRunner(self._upstream), policy, on_batch=on_batch)

    @property
    def supported(self) -> bool:
        """False once a model service answered UNIMPLEMENTED (an older release without ``PredictBatch``)."""
        return self._upstream.supported

    async def run(self, items: Sequence[Item]) -> list[Any]:
        return await self._runner.run(items)

    async def close(self) -> None:
        await self._runner.close()
