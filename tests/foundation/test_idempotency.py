import asyncio

import msgspec
import pytest

from service.errors import Conflict, InvalidInput
from service.idempotency import request_fingerprint, run_once


class Made(msgspec.Struct):
    n: int


def counting_work(counter: list[int], gate: asyncio.Event | None = None):
    async def work(conn):
        if gate is not None:
            await gate.wait()
        counter.append(1)
        n = await conn.fetchval("SELECT nextval('events_id_seq')")
        return Made(n=n)

    return work


async def test_same_key_same_request_replays_stored_answer(db):
    runs: list[int] = []
    fp = request_fingerprint("POST", "/x", b"{}")
    first = await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs))
    second = await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs))
    assert first == second and first[0] == 201 and len(runs) == 1


async def test_same_key_other_request_is_422(db):
    await run_once(db, caller="staff:a", key="k", fingerprint=request_fingerprint("a"), work=counting_work([]))
    with pytest.raises(InvalidInput) as caught:
        await run_once(db, caller="staff:a", key="k", fingerprint=request_fingerprint("b"), work=counting_work([]))
    assert caught.value.code == "idempotency_key_reused" and caught.value.status == 422


async def test_key_in_flight_is_409_then_replays(db):
    runs: list[int] = []
    gate = asyncio.Event()
    fp = request_fingerprint("same")
    first = asyncio.create_task(run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs, gate)))
    await asyncio.sleep(0.1)  # let the first attempt take the key
    with pytest.raises(Conflict) as caught:
        await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs))
    assert caught.value.code == "idempotency_in_progress"
    gate.set()
    answer = await first
    assert await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs)) == answer
    assert len(runs) == 1


async def test_concurrent_retries_run_the_work_once(db):
    runs: list[int] = []
    fp = request_fingerprint("same")
    results = await asyncio.gather(
        *(run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs)) for _ in range(8)),
        return_exceptions=True,
    )
    answers = {r for r in results if isinstance(r, tuple)}
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(answers) == 1 and len(answers) + len(conflicts) >= 1
    assert len(runs) == 1 and all(isinstance(r, tuple | Conflict) for r in results)


async def test_another_callers_key_does_not_replay(db):
    runs: list[int] = []
    fp = request_fingerprint("same")
    mine = await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs))
    theirs = await run_once(db, caller="staff:b", key="k", fingerprint=fp, work=counting_work(runs))
    assert mine != theirs and len(runs) == 2


async def test_failed_work_stores_no_answer_but_binds_the_key(db):
    fp = request_fingerprint("same")

    async def failing(conn):
        await conn.execute("INSERT INTO events (type) VALUES ('test.failed')")
        raise Conflict("no", code="nope")

    with pytest.raises(Conflict):
        await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=failing)
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE status_code <> 0") == 0
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'test.failed'") == 0
    with pytest.raises(InvalidInput) as caught:  # the key names the refused request, not any other
        await run_once(db, caller="staff:a", key="k", fingerprint=request_fingerprint("other"), work=counting_work([]))
    assert caught.value.code == "idempotency_key_reused"
    runs: list[int] = []
    first = await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs))
    assert await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs)) == first
    assert runs == [1]  # the retry that succeeded is stored and replayed


async def test_unkept_answer_is_bound_but_runs_again(db):
    runs: list[int] = []
    fp = request_fingerprint("reveal")
    await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs), replay=False)
    await run_once(db, caller="staff:a", key="k", fingerprint=fp, work=counting_work(runs), replay=False)
    assert runs == [1, 1]
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT response FROM idempotency_keys") == b""
    with pytest.raises(InvalidInput):
        await run_once(db, caller="staff:a", key="k", fingerprint=request_fingerprint("other"), work=counting_work(runs), replay=False)
