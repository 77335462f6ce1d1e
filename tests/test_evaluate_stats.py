"""common/stats.py: the IQM headline and its stratified bootstrap CI, against scipy and a plain resampling loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from common.stats import N_RESAMPLES, score_stats


def test_iqm_and_cis_match_scipy_on_hand_made_numbers():
    x = [1, 2, 3, 4, 5, 6, 7, 100]
    s = score_stats(x)
    assert s["n"] == 8 and s["strata"] == 1 and s["median"] == 4.5 and s["mean"] == 16.0 and s["std"] == pytest.approx(34.0)
    assert s["iqm"] == 4.5 == sps.trim_mean(x, 0.25)  # mean of 3, 4, 5, 6: the outlier 100 is outside the middle half
    assert score_stats([1, 2, 3, 4, 5, 6, 7, 8, 9])["iqm"] == sps.trim_mean(range(1, 10), 0.25) == 5.0  # floor(9/4) cut
    for key, statistic in (("iqm_ci95", lambda a, axis: sps.trim_mean(a, 0.25, axis=axis)), ("ci95", np.mean)):
        ref = sps.bootstrap((np.array(x, float),), statistic, n_resamples=N_RESAMPLES, method="percentile",
                            rng=np.random.default_rng(0)).confidence_interval  # fmt: skip
        assert s[key] == pytest.approx([ref.low, ref.high], abs=1e-12), key
    assert s["iqm_ci95"][1] < s["ci95"][1]  # the one 100-point game widens the mean's CI, not the IQM's


def test_bootstrap_is_stratified_by_seed():
    # each seed's games are constant: resampling within seeds never changes the pooled sample, resampling across does
    x, seeds = [1, 1, 1, 5, 5, 5], [0, 0, 0, 1, 1, 1]
    strat, pooled = score_stats(x, strata=seeds), score_stats(x)
    assert strat["strata"] == 2 and strat["iqm_ci95"] == [3.0, 3.0] and strat["ci95"] == [3.0, 3.0]
    assert pooled["iqm_ci95"] == [1.0, 5.0]
    # unequal strata against a plain loop that resamples each seed's games within the seed
    rng = np.random.default_rng(3)
    groups = [rng.normal(40, 10, 12), rng.normal(60, 20, 7), rng.exponential(50, 9)]
    x, seeds = np.concatenate(groups), np.repeat([7, 8, 9], [len(g) for g in groups])
    s = score_stats(x, strata=seeds)
    boot = [sps.trim_mean(np.concatenate([rng.choice(g, len(g)) for g in groups]), 0.25) for _ in range(4000)]
    assert s["strata"] == 3 and s["iqm_ci95"] == pytest.approx(np.quantile(boot, [0.025, 0.975]), rel=0.04)


def test_iqm_is_stable_on_heavy_tailed_scores_and_the_mean_is_not():
    """Breakout-like scores: most games 20..60, one in ten tunnels behind the wall for 300..500 points."""
    rng = np.random.default_rng(0)

    def games(n: int) -> np.ndarray:
        return np.where(rng.random(n) < 0.1, rng.uniform(300, 500, n), np.clip(rng.normal(40, 10, n), 0, None))

    evals = [score_stats(games(30), ci=False) for _ in range(300)]  # 300 evaluations of 30 games
    iqm, mean = np.array([e["iqm"] for e in evals]), np.array([e["mean"] for e in evals])
    assert iqm.std() < mean.std() / 3 and np.quantile(iqm, 0.9) - np.quantile(iqm, 0.1) < 15 < 40 < np.ptp(mean)
    # one more tunnelling game in a 30-game evaluation moves the mean by ~12 points and the IQM by under 1
    base = games(30)
    before, after = score_stats(base, ci=False), score_stats(np.append(base, 450.0), ci=False)
    assert abs(after["iqm"] - before["iqm"]) < 1 and after["mean"] - before["mean"] > 10
    one = score_stats(games(60), strata=np.repeat([0, 1, 2], 20))
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(one["iqm_ci95"]) < width(one["ci95"]) / 3


def test_edge_cases_and_large_samples():
    assert score_stats([]) == {"n": 0}
    one = score_stats([7.0])
    assert one["iqm"] == one["mean"] == 7.0 and one["std"] == 0.0 and one["ci95"] is None and one["iqm_ci95"] is None
    # a seed with a single game: no CI (that stratum cannot be resampled) rather than a CI that ignores the strata
    assert score_stats([1, 2, 3], strata=[0, 0, 1])["iqm_ci95"] is None
    assert "ci95" not in score_stats([1, 2, 3], ci=False)
    # 5,000 games are resampled in batches (<= 2M values at once); the mean's CI has the normal-theory width
    big = np.random.default_rng(1).normal(50, 10, 5_000)
    s = score_stats(big, strata=np.arange(5_000) % 5)
    lo, hi = s["ci95"]
    assert lo < big.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * 10 / np.sqrt(5_000), rel=0.15)
    assert s["iqm_ci95"][0] < s["iqm"] < s["iqm_ci95"][1]
