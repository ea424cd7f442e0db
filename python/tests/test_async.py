"""arecv waits without blocking the asyncio event loop."""

import asyncio
import time

import camux


def test_arecv_lets_other_tasks_run(publish):
    pub = publish("cam0", "--width", "64", "--height", "48", "--fps", "20", "--slots", "32")

    async def main():
        sub = camux.Subscriber("cam0", dir=pub.dir)
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.002)  # the other task's own work, not a wait
                ticks += 1

        t = asyncio.create_task(ticker())
        seqs, during = [], []
        for _ in range(6):
            before = ticks
            f = await sub.arecv(timeout=10)
            during.append(ticks - before)
            seqs.append(f.seq)
            f.verify()
            f.release()
        stop.set()
        await t
        sub.close()
        return seqs, during

    seqs, during = asyncio.run(main())
    assert seqs == list(range(seqs[0], seqs[0] + 6))
    # At 20 fps each arecv after the first waits ~50 ms for its frame: had it
    # blocked the loop, the ticker could not have run during it.
    assert sum(during[1:]) >= 10, during
    assert sum(1 for d in during[1:] if d > 0) >= 3, during


def test_arecv_cancel_and_timeout(publish):
    pub = publish("cam0", "--width", "64", "--height", "48", "--fps", "1")

    async def main():
        sub = camux.Subscriber("cam0", dir=pub.dir)
        (await sub.arecv(timeout=10)).release()
        # At 1 fps a 50 ms window without a frame comes within a few tries.
        for _ in range(5):
            try:
                (await sub.arecv(timeout=0.05)).release()
            except camux.Timeout as e:
                assert isinstance(e, TimeoutError)
                break
        else:
            raise AssertionError("no 50 ms gap in a 1 fps stream")
        # Cancel an arecv (wait_for cancels it on its timeout)...
        cancelled = False
        try:
            (await asyncio.wait_for(sub.arecv(), 0.05)).release()
        except asyncio.TimeoutError:
            cancelled = True
        # ...its worker gives the subscriber back: the next arecv gets the
        # next frame instead of waiting forever behind it.
        t0 = time.monotonic()
        f = await sub.arecv(timeout=10)
        assert f.seq > 1
        f.release()
        sub.close()
        return cancelled, time.monotonic() - t0

    cancelled, elapsed = asyncio.run(main())
    assert cancelled and elapsed < 5
