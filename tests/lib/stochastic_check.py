"""Statistics of stochastic rounding over many independent draws (run_stochastic_suite.py's
unbiasedness test; selftest_oracle.py checks that it accepts true stochastic rounding and
rejects biased ones).  Not a test by itself."""
import numpy as np

Z_SIGMA = 5.0                       # aggregate tests: 5 standard deviations
ALPHA = 1e-6                        # per-entry test: family-wise false-alarm probability


def unbiasedness(prob, res, bits):
    """RTN-stochastic: statistics of the copies' codes.  Returns (problems, summary).

    For an entry with t = w/δ (δ, zero from the file: RTN's parameters come from W, so they
    are the same in every copy), lo = floor(t) + zero, f = t − floor(t), each copy rounds up
    with probability f independently (distinct Philox counters), so N = #copies that chose
    lo + 1 ~ Binomial(K, f) and the mean dequantized weight is δ(lo − zero + N/K) -> w.
    Entries where lo or lo + 1 leaves [0, maxq] (clamping, biased by design) are skipped.
      (i)   every code is lo or lo + 1;
      (ii)  aggregate bias: Z = Σ(N − Kf)/sqrt(Σ Kf(1−f)), a sum of M·K independent
            Bernoulli deviations, is N(0,1) to high accuracy: |Z| <= 5;
      (iii) chi-square: χ² = Σ(N − Kf)²/(Kf(1−f)) over entries with 0.01 <= f <= 0.99 has
            mean M and variance Σ(2 − 6/K + 1/(Kf(1−f))) (the binomial's 4th moment); the
            sum of M independent terms is close to normal: |χ² − M| <= 5 sd.  Catches a
            wrong per-entry probability that cancels in (ii);
      (iv)  per entry, Hoeffding with a union bound over the M entries at total false-alarm
            probability 1e-6: |N/K − f| <= sqrt(ln(2M/1e-6)/(2K)) (about 0.23 for K = 200).
    """
    names = sorted(res)
    K = len(names)
    maxq = 2 ** bits - 1
    first = res[names[0]]
    W = prob[names[0]]["W"]
    out = []
    same = all(np.array_equal(res[n]["scales"], first["scales"]) and
               np.array_equal(res[n]["zeros"], first["zeros"]) for n in names)
    if not same:
        out.append("RTN scales/zeros differ between copies of the same layer")
    gi = first["g_idx"].astype(np.int64)
    d = first["scales"].astype(np.float64)[:, gi]
    z = first["zeros"].astype(np.int64)[:, gi]
    t = W / d
    lo = np.floor(t) + z
    f = t - np.floor(t)
    C = np.stack([res[n]["codes"] for n in names])               # [K, rows, cols]
    ok = (lo >= 0) & (lo + 1 <= maxq)
    M = int(ok.sum())
    bad = ok[None] & (C != lo[None]) & (C != lo[None] + 1)
    if bad.any():
        out.append("%d codes are neither floor nor floor+1 of w/δ + zero" % int(bad.sum()))
    N = np.sum(C == lo[None] + 1, axis=0).astype(np.float64)
    dev = (N - K * f)[ok]
    var = (K * f * (1 - f))[ok]
    Z = float(dev.sum() / np.sqrt(var.sum()))
    if abs(Z) > Z_SIGMA:
        out.append("aggregate bias Z = %.2f (|Z| > %.0f)" % (Z, Z_SIGMA))
    m2 = ok & (f >= 0.01) & (f <= 0.99)
    pq = (f * (1 - f))[m2]
    chi = float(np.sum((N - K * f)[m2] ** 2 / (K * pq)))
    M2 = int(m2.sum())
    sd = float(np.sqrt(np.sum(2.0 - 6.0 / K + 1.0 / (K * pq))))
    if abs(chi - M2) > Z_SIGMA * sd:
        out.append("chi-square %.1f, expected %d ± %.1f" % (chi, M2, sd))
    tol = np.sqrt(np.log(2 * M / ALPHA) / (2 * K))
    worst = float(np.max(np.abs(N / K - f)[ok])) if M else 0.0
    if worst > tol:
        out.append("an entry's round-up frequency is off by %.3f > %.3f" % (worst, tol))
    Wbar = np.mean(np.stack([res[n]["What"] for n in names]), axis=0)
    summ = ("K %d, M %d entries (%d clamp-prone skipped): Z %.2f, chi2 %.1f (E %d ± %.1f), "
            "max |N/K−f| %.3f <= %.3f, max |mean Ŵ − W|/δ %.3f"
            % (K, M, W.size - M, Z, chi, M2, sd, worst, tol,
               float(np.max(np.abs(Wbar - W)[ok] / d[ok])) if M else 0.0))
    return out, summ
