"""Every-frame vs latest-only, and lag reported exactly."""

import pytest

import camux


def _wait_frames(sub, n):
    """Lets `n` frames go by (received and released by another reader)."""
    last = None
    for _ in range(n):
        with sub.recv(timeout=10) as f:
            last = f.seq
    return last


def test_every_frame_in_order_vs_latest(publish):
    pub = publish("cam0", "--width", "64", "--height", "48", "--fps", "200", "--slots", "32")
    every = camux.Subscriber("cam0", dir=pub.dir, mode="every")
    latest = camux.Subscriber("cam0", dir=pub.dir, mode="latest")
    assert (every.mode, latest.mode) == ("every", "latest")
    seqs = []
    for f in every:
        seqs.append(f.seq)
        f.release()
        if len(seqs) == 20:
            break
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    # The latest reader was idle meanwhile: its next frame is the newest,
    # and it skipped the rest on purpose.
    first = latest.recv(timeout=10)
    first.release()
    head = _wait_frames(every, 10)
    f = latest.recv(timeout=10)
    assert f.seq >= head and f.skipped == f.seq - first.seq - 1 and f.skipped >= 9
    assert f.lagged == 0
    f.release()
    # latest() on an every-frame subscriber jumps to the newest as well.
    head = _wait_frames(latest, 3)
    newest = every.latest()
    assert newest is not None and newest.seq >= head
    newest.release()


def test_lag_is_counted_on_the_next_frame(publish):
    pub = publish("cam0", "--width", "64", "--height", "48", "--fps", "200", "--slots", "4")
    slow = camux.Subscriber("cam0", dir=pub.dir)
    fast = camux.Subscriber("cam0", dir=pub.dir)
    with slow.recv(timeout=10) as f:
        prev = f.seq
    _wait_frames(fast, 30)  # the ring has wrapped past `slow` many times
    f = slow.recv(timeout=10)
    assert f.lagged > 0 and f.seq == prev + 1 + f.lagged, "received + lagged is exact"
    assert slow.lagged_total == f.lagged
    f.release()


def test_lag_as_an_exception(publish):
    pub = publish("cam0", "--width", "64", "--height", "48", "--fps", "200", "--slots", "4")
    slow = camux.Subscriber("cam0", dir=pub.dir, raise_lagged=True)
    fast = camux.Subscriber("cam0", dir=pub.dir)
    with slow.recv(timeout=10) as f:
        prev = f.seq
    _wait_frames(fast, 30)
    with pytest.raises(camux.Lagged) as e:
        slow.recv(timeout=10)
    assert e.value.missed > 0 and not e.value.is_fatal
    with slow.recv(timeout=10) as f:
        assert f.seq == prev + 1 + e.value.missed and f.lagged == 0


@pytest.mark.parametrize("spin", [0.0, 0.002])
def test_spin_option_is_checked_and_lag_stays_exact_when_polling(publish, spin):
    # Flat out: frames microseconds apart, so a blocking recv polls for
    # `spin` before it sleeps (never, with 0). Either way every frame is
    # received or counted as lagged, exactly.
    pub = publish("cam0", "--width", "64", "--height", "48", "--flat", "--frames", "200000",
                  "--wait-readers", "1", "--linger", "10s", "--slots", "32")
    with pytest.raises(ValueError, match="spin"):
        camux.Subscriber("cam0", dir=pub.dir, spin=-1.0)
    with camux.Subscriber("cam0", dir=pub.dir, spin=spin) as sub:
        got = []
        for f in sub:
            got.append((f.seq, f.lagged))
            f.release()
            if len(got) == 30:
                break
    assert got[0][0] == 1 + got[0][1]
    for (prev, _), (seq, lagged) in zip(got, got[1:]):
        assert seq == prev + 1 + lagged
