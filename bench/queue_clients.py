"""Client layer for broker consumers, by measurement (docs/decisions.md): FastStream vs aio-pika on RabbitMQ.

The same trivial request→reply consumer (answers ``{"ok": true, "n": len(body)}`` without a model, acks after
the reply is published, prefetch 64) written both ways, each in its own process; a producer in this process
keeps 64 requests in flight with ``reply_to`` + ``correlation_id`` and waits for every answer. Reported per
run: messages/s (wall, producer side) and the consumer process's CPU time per message (``process_time``
from its first message to its last). Medians of ``--runs`` alternating runs.

    pip install 'faststream[rabbit]' aio-pika
    python bench/queue_clients.py --messages 5000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
import uuid

URL = "amqp://guest:guest@127.0.0.1:5672/"
PREFETCH = 64


def _report(queue_name: str, cpu: float, n: int) -> None:
    print(json.dumps({"queue": queue_name, "cpu_s": cpu, "n": n}), flush=True)


def aio_pika_consumer(queue_name: str, total: int, done: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import aio_pika

    async def main() -> None:
        connection = await aio_pika.connect_robust(URL)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(queue_name, auto_delete=True)
        finished = asyncio.Event()
        state = {"n": 0, "t0": 0.0}

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if state["n"] == 0:
                state["t0"] = time.process_time()
            body = json.loads(message.body)
            reply = json.dumps({"ok": True, "n": len(body)}).encode()
            await channel.default_exchange.publish(
                aio_pika.Message(reply, correlation_id=message.correlation_id),
                routing_key=message.reply_to or "",
            )
            await message.ack()
            state["n"] += 1
            if state["n"] == total:
                done.put(time.process_time() - state["t0"])
                finished.set()

        await queue.consume(on_message)
        done.put("ready")
        await finished.wait()
        await connection.close()

    asyncio.run(main())


def faststream_consumer(queue_name: str, total: int, done: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    async def main() -> None:
        broker = RabbitBroker(URL, default_channel=Channel(prefetch_count=PREFETCH), logger=None)
        state = {"n": 0, "t0": 0.0}
        finished = asyncio.Event()

        @broker.subscriber(RabbitQueue(queue_name, auto_delete=True))
        async def handle(body: dict) -> dict:  # type: ignore[type-arg]
            if state["n"] == 0:
                state["t0"] = time.process_time()
            state["n"] += 1
            if state["n"] == total:
                # the reply of the last one is published after we return; close enough (1 of N)
                asyncio.get_running_loop().call_soon(finished.set)
                done.put(time.process_time() - state["t0"])
            return {"ok": True, "n": len(body)}

        await broker.start()
        done.put("ready")
        await finished.wait()
        await asyncio.sleep(0.5)  # let the last reply go out
        await broker.stop()

    asyncio.run(main())


async def produce(queue_name: str, total: int, inflight: int) -> float:
    import aio_pika

    connection = await aio_pika.connect(URL)
    channel = await connection.channel()
    replies = await channel.declare_queue(exclusive=True)
    pending: dict[str, asyncio.Future[bytes]] = {}

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = pending.pop(message.correlation_id or "", None)
        if future is not None:
            future.set_result(message.body)
        await message.ack()

    await replies.consume(on_reply)
    sem = asyncio.Semaphore(inflight)
    body = json.dumps({"text": "I love this product"}).encode()

    async def one() -> None:
        async with sem:
            cid = uuid.uuid4().hex
            future = asyncio.get_running_loop().create_future()
            pending[cid] = future
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body, correlation_id=cid, reply_to=replies.name, content_type="application/json"
                ),
                routing_key=queue_name,
            )
            await asyncio.wait_for(future, 60)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    elapsed = time.perf_counter() - started
    await connection.close()
    return elapsed


def run_once(kind: str, total: int) -> tuple[float, float]:
    ctx = multiprocessing.get_context("spawn")
    done: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    queue_name = f"bench.{kind}.{uuid.uuid4().hex[:8]}"
    target = aio_pika_consumer if kind == "aio-pika" else faststream_consumer
    proc = ctx.Process(target=target, args=(queue_name, total, done))
    proc.start()
    try:
        assert done.get(timeout=30) == "ready"
        elapsed = asyncio.run(produce(queue_name, total, PREFETCH))
        cpu = float(done.get(timeout=60))
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    return total / elapsed, cpu / total * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"aio-pika": [], "faststream": []}
    for _ in range(args.runs):
        for kind in results:  # alternating
            results[kind].append(run_once(kind, args.messages))
            rate, cpu = results[kind][-1]
            print(kind, f"{rate:.0f} msg/s  {cpu:.0f} us CPU/msg", flush=True)
    for kind, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        print(f"median {kind}: {rate:.0f} msg/s, consumer {cpu:.0f} us CPU per message")


if __name__ == "__main__":
    main()
