from tasktune.metrics.bootstrap import bootstrap_ci


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_data():
    small = [1, 0] * 20
    big = [1, 0] * 2000

    def mean(h):
        return lambda idx: sum(h[i] for i in idx) / len(idx)

    lo, hi = bootstrap_ci(small, mean(small), samples=500)
    blo, bhi = bootstrap_ci(big, mean(big), samples=200)
    assert lo < 0.5 < hi and blo < 0.5 < bhi
    assert (bhi - blo) < (hi - lo) / 3
    assert bootstrap_ci(small, mean(small), samples=500) == (lo, hi)  # seeded
