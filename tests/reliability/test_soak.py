"""A short soak (the long one is `make soak`): many hosts and queues, verified data, no leaks."""
from tests.reliability.soak import run


def test_short_soak_has_no_errors_and_no_leaks():
    res = run(seconds=12, hosts=6, queues=3)
    assert not res.errors, res.errors[:10]
    assert res.ios > 500 and res.verified > 100
    # the second round reused what the first allocated: no descriptor or memory growth
    assert res.fds_after <= res.fds_before
    assert res.rss_after_kib - res.rss_before_kib < 16 * 1024
