"""Can state features known at issue time beat the raw level-1 cascade forecast?

A diagnostic for issue 6, run directly::

    PYTHONPATH=src:tests python3 tests/cascade_level1_oracle.py --hours 72 --seeds 1 2 3 4

Level 1's raw forecast is the volatility reach probability (reflection principle,
the engine's volatility, the consensus price). On :mod:`heatcore.sim` its Brier
score ties the forecast with learning off exactly (test_cascade_brier.py's strict
xfail): a Platt map of ``logit(raw)`` alone cannot add resolution. This script
asks whether extra information would, on the same occasions as
cascade_brier.py's learned engine (every 5 simulated minutes after a 1 h warm-up,
both sides, resolved on the true price path):

* ``online``: the engine's recalibration scheme extended by issue-time features,
  i.e. a MAP logistic fit ``sigmoid(a + b logit(raw) + c . f)`` (Gaussian prior:
  identity for ``a, b``, zero for ``c``, precision 1), each resolved forecast
  weighted 1/12 (overlap), refitted every 16 resolutions on the forecasts
  resolved before the issue time only. Features: ``mom300`` the consensus
  return towards the level over the last 5 min in sigma units (momentum);
  ``liq900`` log(1 + the side's liquidated $M over the last 15 min) (burst
  intensity); both.
* ``in-sample``: the same model fitted once on the whole run (lookahead: an upper
  bound of what these features hold), with eleven features: momentum over 1, 5 and
  15 min, both sides' liquidated USD over 5 and 15 min and the side's over 1 h,
  the level's distance in sigma units, the level's expected notional, the last
  15 min's realized variance over the engine's.
* ``two-fold``: the in-sample model fitted on one half of the run and scored on
  the other (both ways): the features' information out of sample.
* ``oracle``: the same reflection formula from the simulator's true price, with
  its true variance (diffusion plus jumps): what a perfect volatility and price
  would give.
* ``learned vol scale``: the one-parameter candidate p = erfc(u / s) (raw = erfc(u),
  i.e. the engine's volatility times s), s fitted online by maximum likelihood or
  minimum Brier on the resolved forecasts with the recalibration's forgetting,
  ungated and behind the engine's gate (paired z > 2 on effective forecasts); the
  best fixed s with lookahead and the true variance from the engine's own origin,
  with their paired z over the whole run (what even a perfect scale would show the gate).
* excursion laws: the simulator's true exogenous law (diffusion plus jumps, Monte
  Carlo: an oracle shape), one learned online from the true excursions of earlier
  occasions (Brownian prior), and the horizon forecast's own learned law
  (``Forecaster::survival`` with its volatility; Brownian with learning off).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from cascade_brier import _reached

import heatcore as hc
from heatcore import sim
from heatcore.events import KIND_LIQUIDATION, KIND_PRICE

HORIZON_S = 3600.0
EVERY_S = 300.0
OVERLAP = HORIZON_S / EVERY_S
REFIT_EVERY = 16
MIN_RESOLVED = 48


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1.0 - 1e-4)
    return np.log(p / (1.0 - p))


def _reach(d: np.ndarray, sigma: np.ndarray | float, t: float = HORIZON_S) -> np.ndarray:
    z = d / (np.asarray(sigma) * math.sqrt(2.0 * t))
    return np.minimum(1.0, np.vectorize(math.erfc)(z))


def collect(seed: int, hours: float) -> dict[str, np.ndarray]:
    """Per occasion with a level 1: issue time, raw probability, outcome and features."""
    r = sim.simulate(hours=hours, seed=seed)
    ev = r.events
    eng = hc.Engine(r.symbol, r.step, venues=r.venues, learn=True, cascade={"horizon_s": HORIZON_S})
    path_ts, path_px = r.truth.price_path
    horizon_ms = int(HORIZON_S * 1000)
    t_first, t_last = int(ev["ts"][0]), int(ev["ts"][-1])
    times = np.arange(t_first + horizon_ms, t_last - horizon_ms, int(EVERY_S * 1000))
    cut = np.searchsorted(ev["ts"], times, side="right")
    liq = ev[ev["kind"] == KIND_LIQUIDATION]
    marks = ev[ev["kind"] == KIND_PRICE]
    first_venue = marks[marks["venue"] == 0]
    out: dict[str, list[float]] = {k: [] for k in (
        "t", "raw", "y", "mom60", "mom300", "mom900", "liq300", "opp300", "liq900", "opp900", "liq3600",
        "dist", "notional", "rv", "level", "true_px", "f_sigma", "raw_sigma", "exc")}
    f_surv: list[np.ndarray] = []
    start = 0
    for t, c in zip(times, cut, strict=True):
        eng.ingest(ev[start:c])
        start = c
        st = eng.cascade_state()
        sigma, cons = float(st["vol_per_sqrt_s"]), float(st["consensus_price"])
        fst = eng.forecast_state()
        for side in ("long", "short"):
            lv = eng.cascade(side, 10)
            if lv.size == 0:
                continue
            toward = -1.0 if side == "long" else 1.0
            out["t"].append(float(t))
            out["raw"].append(float(lv["raw_probability"][0]))
            out["y"].append(float(_reached(side, lv["price"], path_ts, path_px, int(t), horizon_ms)[0]))
            for w in (60, 300, 900):
                m = (marks["ts"] > t - w * 1000) & (marks["ts"] <= t - w * 1000 + 30_000)
                then = float(np.median(marks["price"][m])) if m.any() else cons
                out[f"mom{w}"].append(toward * math.log(cons / then) / (sigma * math.sqrt(w)))
            code = 1 if side == "long" else -1
            for w in (300, 900, 3600):
                sl = liq[(liq["ts"] > t - w * 1000) & (liq["ts"] <= t)]
                out[f"liq{w}"].append(math.log1p(float(sl["value"][sl["side"] == code].sum()) / 1e6))
                if w < 3600:
                    out[f"opp{w}"].append(math.log1p(float(sl["value"][sl["side"] == -code].sum()) / 1e6))
            level = float(lv["price"][0])
            out["dist"].append(abs(math.log(level / cons)) / (sigma * math.sqrt(HORIZON_S)))
            out["notional"].append(math.log1p(float(lv["notional"][0]) / 1e6))
            pp = first_venue["price"][(first_venue["ts"] > t - 900_000) & (first_venue["ts"] <= t)]
            rv = float(np.sum(np.diff(np.log(pp)) ** 2)) / 900.0 / sigma**2 if pp.size > 2 else 1.0
            out["rv"].append(math.log(max(rv, 1e-3)))
            out["level"].append(level)
            out["true_px"].append(float(path_px[int(np.searchsorted(path_ts, int(t), side="right")) - 1]))
            out["f_sigma"].append(math.sqrt(float(fst["variance_rate"])))
            out["raw_sigma"].append(sigma)
            a = int(np.searchsorted(path_ts, int(t), side="right")) - 1
            b = int(np.searchsorted(path_ts, int(t) + horizon_ms, side="right"))
            seg = np.log(path_px[a:b] / path_px[a])
            out["exc"].append(float(-seg.min() if side == "long" else seg.max()))  # true excursion towards the level
            f_surv.append(np.asarray(fst["survival_z"], dtype=float))
    d = {k: np.asarray(v) for k, v in out.items()}
    d["f_surv"] = np.asarray(f_surv).reshape(len(f_surv), -1)
    # The raw forecast's distance in units of sigma sqrt(2 h), from the walk's own origin
    # (the engine's last price, not the consensus): raw = erfc(u).
    d["u"] = _erfc_inverse(d["raw"])
    return d


def _erfc_inverse(p: np.ndarray) -> np.ndarray:
    """u >= 0 with erfc(u) = p (bisection; p >= 1 gives 0)."""
    lo, hi = np.zeros(p.size), np.full(p.size, 12.0)
    erfc = np.vectorize(math.erfc)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = erfc(mid) > p
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return np.where(p >= 1.0, 0.0, 0.5 * (lo + hi))


def _scaled(u: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """The reach with the volatility multiplied by ``scale``: erfc(u / scale)."""
    return np.minimum(1.0, np.vectorize(math.erfc)(u / np.asarray(scale)))


LOG_SCALES = np.linspace(-0.5, 0.5, 101)   # candidate log volatility scales, step 0.01
CALIB_HALF_LIFE = 2000.0                    # CascadeConfig.calibration_half_life
GATE_Z0, GATE_Z1, GATE_MIN_NEFF = 2.0, 1.5, 4.0


def learned_scale(d: dict[str, np.ndarray], loss: str = "log") -> tuple[np.ndarray, np.ndarray, float]:
    """The candidate "learned volatility scale" for level 1, p = erfc(u / s), and the gate.

    ``s`` is the grid minimiser (log s in +-0.5, step 0.01) of the log loss (or the
    Brier score) of erfc(u / s) on the forecasts resolved before the issue time,
    weighted with the recalibration's forgetting (half-life 2000 resolved forecasts),
    refitted every 16 resolutions once 48 have resolved (before: s = 1, the raw walk).
    The gate is the engine's: forgetting means of the paired squared-error
    differences (candidate as issued - raw), z on min(n, 1/rate) / overlap effective
    forecasts, issued = raw + clip((z - 2) / 1.5, 0, 1) (candidate - raw).
    Returns (candidate, issued, largest gate z seen)."""
    t, y, u = d["t"], d["y"], d["u"]
    order = np.argsort(t, kind="stable")
    t, y, u, raw = t[order], y[order], u[order], d["raw"][order]
    grid = [_scaled(u, math.exp(ls)) for ls in LOG_SCALES]
    rate = 1.0 - 2.0 ** (-1.0 / CALIB_HALF_LIFE)
    cand, issued = raw.copy(), raw.copy()
    s_log, fitted = 0.0, 0
    n = dm = dm2 = 0.0
    scored = 0
    z_max = -math.inf
    for i in range(t.size):
        resolved = int(np.searchsorted(t, t[i] - HORIZON_S * 1000, side="right"))
        while scored < resolved:                       # the track record, as issued
            e = (cand[scored] - y[scored]) ** 2 - (raw[scored] - y[scored]) ** 2
            n += 1.0
            eta = max(1.0 / n, rate)
            dm += eta * (e - dm)
            dm2 += eta * (e * e - dm2)
            scored += 1
        if resolved >= MIN_RESOLVED and (resolved - fitted >= REFIT_EVERY or fitted == 0):
            w = (1.0 - rate) ** np.arange(resolved - 1, -1, -1, dtype=float)
            yy = y[:resolved]
            if loss == "log":
                costs = [-np.sum(w * (yy * np.log(np.clip(g[:resolved], 1e-6, 1.0)) +
                                      (1.0 - yy) * np.log(np.clip(1.0 - g[:resolved], 1e-6, 1.0)))) for g in grid]
            else:
                costs = [np.sum(w * (g[:resolved] - yy) ** 2) for g in grid]
            s_log = float(LOG_SCALES[int(np.argmin(costs))])
            fitted = resolved
        cand[i] = float(_scaled(u[i:i + 1], math.exp(s_log))[0])
        n_eff = min(n, 1.0 / rate) / OVERLAP
        gate = 0.0
        if n_eff >= GATE_MIN_NEFF:
            z = -dm / math.sqrt(max(dm2 - dm * dm, 1e-12) / n_eff)
            z_max = max(z_max, z)
            gate = min(max((z - GATE_Z0) / GATE_Z1, 0.0), 1.0)
        issued[i] = raw[i] + gate * (cand[i] - raw[i])
    out_c, out_i = np.empty_like(cand), np.empty_like(issued)
    out_c[order], out_i[order] = cand, issued
    return out_c, out_i, z_max


def paired_z(p: np.ndarray, raw: np.ndarray, y: np.ndarray) -> float:
    """z of the Brier improvement of ``p`` over ``raw`` on the whole run (1/overlap effective forecasts each)."""
    e = (p - y) ** 2 - (raw - y) ** 2
    return float(-e.mean() / max(e.std(), 1e-12) * math.sqrt(e.size / OVERLAP))


def learned_excursions(d: dict[str, np.ndarray], prior_n: float = 200.0) -> np.ndarray:
    """Level 1 from an excursion law learned online: the survival of the true hour's excursion
    towards the level (both sides' occasions resolved before the issue time, in units of the
    engine's sigma sqrt(h) at issue), with ``prior_n`` Brownian pseudo-observations."""
    z_obs = d["exc"] / (d["raw_sigma"] * math.sqrt(HORIZON_S))
    z = d["u"] * math.sqrt(2.0)
    order = np.argsort(d["t"], kind="stable")
    t_sorted, z_sorted = d["t"][order], z_obs[order]
    out = np.empty(z.size)
    for i in range(z.size):
        k = int(np.searchsorted(t_sorted, d["t"][i] - HORIZON_S * 1000, side="right"))
        brownian = math.erfc(z[i] / math.sqrt(2.0))
        out[i] = 1.0 if z[i] <= 0.0 else (np.count_nonzero(z_sorted[:k] >= z[i]) + prior_n * brownian) / (k + prior_n)
    return out


def true_excursion_law(d: dict[str, np.ndarray], paths: int = 40_000, dt: float = 5.0) -> np.ndarray:
    """Level 1 from the simulator's exogenous price law (diffusion plus Laplace jumps, no
    liquidation impact; Monte Carlo, seeded), at the engine's log distance: an oracle shape."""
    cfg = sim.SimConfig()
    rng = np.random.default_rng(0)
    sd = cfg.daily_vol * math.sqrt(dt / 86400.0)
    x, deepest = np.zeros(paths), np.zeros(paths)
    for _ in range(int(HORIZON_S / dt)):
        x += rng.normal(0.0, sd, paths)
        jump = rng.random(paths) < cfg.jumps_per_day * dt / 86400.0
        x[jump] += rng.laplace(0.0, cfg.jump_size, int(jump.sum()))
        np.maximum(deepest, -x, out=deepest)
    deepest = np.sort(deepest + 0.5826 * sd)        # continuity correction of discrete monitoring
    dist = d["u"] * d["raw_sigma"] * math.sqrt(2.0 * HORIZON_S)
    return np.where(dist <= 0.0, 1.0, 1.0 - np.searchsorted(deepest, dist, side="left") / paths)


def forecaster_reach(d: dict[str, np.ndarray]) -> np.ndarray:
    """Level 1 from the horizon forecast's learned excursion law (Forecaster::survival, z grid
    0..10 by 0.1, log-interpolated) and its volatility (frozen to Brownian with learning off)."""
    z = d["u"] * math.sqrt(2.0) * d["raw_sigma"] / d["f_sigma"]
    zs = np.arange(d["f_surv"].shape[1]) * 0.1
    out = np.array([math.exp(np.interp(zi, zs, np.log(np.maximum(row, 1e-300)))) for zi, row in zip(z, d["f_surv"],
                                                                                                  strict=True)])
    return np.where(z <= 0.0, 1.0, out)


def map_fit(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """MAP logistic fit: weight 1/overlap per forecast, prior precision 1 around (0, 1, 0, ...)."""
    prior = np.zeros(x.shape[1])
    prior[1] = 1.0
    w = 1.0 / OVERLAP
    beta = beta.copy()
    for _ in range(8):
        q = 1.0 / (1.0 + np.exp(-x @ beta))
        g = x.T @ (w * (q - y)) + (beta - prior)
        h = (x * (w * q * (1.0 - q))[:, None]).T @ x + np.eye(x.shape[1])
        beta -= np.linalg.solve(h, g)
    return beta


def design(d: dict[str, np.ndarray], features: tuple[str, ...]) -> np.ndarray:
    cols = [np.ones(d["raw"].size), _logit(d["raw"])] + [d[f] for f in features]
    return np.column_stack(cols)


def online(d: dict[str, np.ndarray], features: tuple[str, ...]) -> np.ndarray:
    """Issued probabilities of the extended recalibration, fitted on resolved forecasts only."""
    x, y, t = design(d, features), d["y"], d["t"]
    order = np.argsort(t, kind="stable")
    x, y, t = x[order], y[order], t[order]
    beta = np.zeros(x.shape[1])
    beta[1] = 1.0
    pred = d["raw"][order].copy()
    fitted = 0
    for i in range(t.size):
        resolved = int(np.searchsorted(t, t[i] - HORIZON_S * 1000, side="right"))
        if resolved < MIN_RESOLVED:
            continue
        if resolved - fitted >= REFIT_EVERY or fitted == 0:
            beta = map_fit(x[:resolved], y[:resolved], beta)
            fitted = resolved
        pred[i] = 1.0 / (1.0 + np.exp(-x[i] @ beta))
    out = np.empty_like(pred)
    out[order] = pred
    return out


ALL = ("mom60", "mom300", "mom900", "liq300", "opp300", "liq900", "opp900", "liq3600", "dist", "notional", "rv")


def report(d: dict[str, np.ndarray]) -> dict[str, float]:
    """Brier score per forecast; indented rows: z statistics of the row above against raw."""
    y = d["y"]

    def brier(p: np.ndarray) -> float:
        return float(np.mean((p - y) ** 2))

    cfg = sim.SimConfig()
    true_sigma = math.sqrt(cfg.daily_vol**2 + cfg.jumps_per_day * 2.0 * cfg.jump_size**2) / math.sqrt(86400.0)
    rows = {"raw": brier(d["raw"])}
    for feats in ((), ("mom300",), ("liq900",), ("mom300", "liq900")):
        rows["online " + ("+".join(("platt", *feats)))] = brier(online(d, feats))
    x = design(d, ALL)
    beta0 = np.zeros(x.shape[1])
    beta0[1] = 1.0
    rows["in-sample platt+all"] = brier(1.0 / (1.0 + np.exp(-x @ map_fit(x, y, beta0))))
    # two-fold: each half of the run scored by the fit on the other half (no lookahead into
    # the scored half; no early-phase noise either)
    half = d["t"] < np.median(d["t"])
    cross = np.empty_like(y)
    for fold in (half, ~half):
        cross[fold] = 1.0 / (1.0 + np.exp(-x[fold] @ map_fit(x[~fold], y[~fold], beta0)))
    rows["two-fold platt+all"] = brier(cross)
    rows["oracle true price+variance"] = brier(_reach(np.abs(np.log(d["level"] / d["true_px"])), true_sigma))
    rows["  paired z (oracle)"] = paired_z(_reach(np.abs(np.log(d["level"] / d["true_px"])), true_sigma), d["raw"], y)
    # The learned volatility scale (one parameter on the raw reach), fitted online and gated
    # like the engine's other candidates; then what the best fixed scale (lookahead) and
    # the true variance from the engine's own origin would give, with their paired z.
    for loss in ("log", "brier"):
        cand, issued, z_max = learned_scale(d, loss)
        rows[f"learned vol scale ({loss}) ungated"] = brier(cand)
        rows[f"learned vol scale ({loss}) gated"] = brier(issued)
        rows[f"  largest gate z ({loss})"] = z_max
    costs = [brier(_scaled(d["u"], math.exp(ls))) for ls in LOG_SCALES]
    best = math.exp(float(LOG_SCALES[int(np.argmin(costs))]))
    rows[f"best fixed vol scale {best:.2f} (lookahead)"] = min(costs)
    rows["  paired z (best fixed scale)"] = paired_z(_scaled(d["u"], best), d["raw"], y)
    true_scale = true_sigma / d["raw_sigma"]
    rows["true variance, engine's origin"] = brier(_scaled(d["u"], true_scale))
    rows["  paired z (true variance)"] = paired_z(_scaled(d["u"], true_scale), d["raw"], y)
    for name, p in (("true excursion law (oracle shape)", true_excursion_law(d)),
                    ("excursion law learned online", learned_excursions(d))):
        rows[name] = brier(p)
        rows[f"  paired z ({name.split(' (')[0]})"] = paired_z(p, d["raw"], y)
    rows["Forecaster's excursion law"] = brier(forecaster_reach(d))
    rows["  paired z (excursion law)"] = paired_z(forecaster_reach(d), d["raw"], y)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=72.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = ap.parse_args()
    for seed in args.seeds:
        d = collect(seed, args.hours)
        print(f"seed {seed}: {d['y'].size} occasions, level 1 reached {int(d['y'].sum())}")
        for name, b in report(d).items():
            print(f"  {name:<30} {b:.4f}")


if __name__ == "__main__":
    main()
