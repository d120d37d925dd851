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
        "dist", "notional", "rv", "level", "true_px")}
    start = 0
    for t, c in zip(times, cut, strict=True):
        eng.ingest(ev[start:c])
        start = c
        st = eng.cascade_state()
        sigma, cons = float(st["vol_per_sqrt_s"]), float(st["consensus_price"])
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
    return {k: np.asarray(v) for k, v in out.items()}


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
