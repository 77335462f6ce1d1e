"""Score statistics shared by evaluate.py and the tools that read its outputs (numpy + scipy only, no torch)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import stats as sps

N_RESAMPLES = 10_000


def score_stats(x: Sequence[float], strata: Optional[Sequence] = None, ci: bool = True, seed: int = 0) -> dict:
    """n, number of strata, mean, std (ddof 1), median, IQM (scipy.stats.trim_mean(x, 0.25): the mean after dropping
    floor(n/4) values from each end, as rliable), min, max and, with ci, 95% percentile-bootstrap CIs of the IQM
    (`iqm_ci95`) and of the mean (`ci95`) from one set of 10,000 resamples (scipy.stats.bootstrap, fixed seed).
    The bootstrap is stratified: values are resampled within their stratum (`strata[i]` labels `x[i]`; evaluate.py
    passes the evaluation seed), each stratum keeping its size. Both CIs are None when a stratum has fewer than 2 values."""

    def mean_and_iqm(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        """[mean, IQM] of the strata's resamples pooled (scipy passes one array per stratum)."""
        pooled = np.concatenate(resampled, axis=axis)
        return np.stack([pooled.mean(axis=axis), sps.trim_mean(pooled, 0.25, axis=axis)])

    a = np.asarray(x, dtype=np.float64)
    if len(a) == 0:
        return {"n": 0}
    labels = np.zeros(len(a)) if strata is None else np.asarray(strata)
    groups = [a[labels == s] for s in np.unique(labels)]
    out = {"n": len(a), "strata": len(groups), "mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
           "median": float(np.median(a)), "iqm": float(sps.trim_mean(a, 0.25)), "min": float(a.min()),
           "max": float(a.max())}  # fmt: skip
    if ci:
        out["iqm_ci95"] = out["ci95"] = None
        if min(map(len, groups)) >= 2:
            res = sps.bootstrap(groups, mean_and_iqm, n_resamples=N_RESAMPLES, batch=max(1, 2_000_000 // len(a)),
                                method="percentile", rng=np.random.default_rng(seed))  # fmt: skip
            (mlo, ilo), (mhi, ihi) = res.confidence_interval
            out["ci95"], out["iqm_ci95"] = [float(mlo), float(mhi)], [float(ilo), float(ihi)]
    return out
