"""Brier evaluation of the cascade forecast on :mod:`heatcore.sim` (known truth).

Run directly for the closing report, e.g.::

    PYTHONPATH=src python3 tests/cascade_brier.py --hours 72 --seeds 1 2

Forecasts are taken every ``every_s`` simulated seconds from an engine fed the
event stream up to that moment, and resolved after the horizon against the
simulator's true price path (did the true mark touch level k's price within the
horizon?). Three forecasts are compared per level k on the same occasions:

* learned: ``Engine(learn=True).cascade`` (its online recalibration only ever
  sees the engine's own resolved forecasts: no lookahead);
* learning off: ``Engine(learn=False).cascade`` (priors, no recalibration);
* climatology: the base rate of "level k reached". Two versions: the
  expanding-window rate over occasions resolved so far (a fair online
  baseline) and the full-sample rate (uses the future: a stricter baseline).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

import heatcore as hc
from heatcore import sim

LEVELS = 10


@dataclass
class BrierReport:
    levels: int
    n: np.ndarray            # occasions per level (level present in the learned forecast)
    base_rate: np.ndarray
    learned: np.ndarray
    static: np.ndarray
    clim_full: np.ndarray
    clim_online: np.ndarray

    def table(self) -> str:
        rows = ["level  n     base   learned  learn-off  clim(full)  clim(online)"]
        for k in range(self.levels):
            if self.n[k] == 0:
                continue
            rows.append(f"{k + 1:>5}  {self.n[k]:<5d} {self.base_rate[k]:.3f}  {self.learned[k]:.4f}   "
                        f"{self.static[k]:.4f}     {self.clim_full[k]:.4f}      {self.clim_online[k]:.4f}")
        return "\n".join(rows)


def _reached(side: str, levels: np.ndarray, path_ts: np.ndarray, path_px: np.ndarray,
             t0: int, horizon_ms: int) -> np.ndarray:
    a = int(np.searchsorted(path_ts, t0, side="right"))
    b = int(np.searchsorted(path_ts, t0 + horizon_ms, side="right"))
    if b <= a:
        return np.zeros(levels.size, dtype=bool)
    seg = path_px[a:b]
    return seg.min() <= levels if side == "long" else seg.max() >= levels


def evaluate(result: sim.SimResult, *, every_s: float = 300.0, horizon_s: float = 3600.0,
             warmup_s: float = 3600.0, cascade: dict | None = None) -> tuple[BrierReport, dict]:
    """Brier scores per level of learned, learning-off and climatological forecasts."""
    ev = result.events
    opts = {"horizon_s": horizon_s, **(cascade or {})}
    engines = {name: hc.Engine(result.symbol, result.step, venues=result.venues, learn=learn, cascade=opts)
               for name, learn in (("learned", True), ("static", False))}
    path_ts, path_px = result.truth.price_path
    t_first, t_last = int(ev["ts"][0]), int(ev["ts"][-1])
    horizon_ms = int(horizon_s * 1000)
    times = np.arange(t_first + int(warmup_s * 1000), t_last - horizon_ms, int(every_s * 1000))
    cut = np.searchsorted(ev["ts"], times, side="right")
    rec: dict[str, list] = {"learned": [], "static": [], "reached": [], "t": []}
    start = 0
    for t, c in zip(times, cut, strict=True):
        for eng in engines.values():
            eng.ingest(ev[start:c])
        start = c
        for side in ("long", "short"):
            f = {name: eng.cascade(side, LEVELS) for name, eng in engines.items()}
            lv = f["learned"]
            p_learn = np.full(LEVELS, np.nan)
            p_static = np.full(LEVELS, np.nan)
            hit = np.zeros(LEVELS, dtype=bool)
            n = lv.size
            p_learn[:n] = lv["probability"]
            # The static engine sees the same map (same events, same mix): same levels.
            st = f["static"]
            m = min(n, st.size)
            p_static[:m] = np.where(np.isclose(st["price"][:m], lv["price"][:m]), st["probability"][:m], np.nan)
            hit[:n] = _reached(side, lv["price"], path_ts, path_px, int(t), horizon_ms)
            rec["learned"].append(p_learn)
            rec["static"].append(p_static)
            rec["reached"].append(hit)
            rec["t"].append(int(t))
    P = np.array(rec["learned"])
    S = np.array(rec["static"])
    Y = np.array(rec["reached"], dtype=float)
    T = np.array(rec["t"])
    n = np.zeros(LEVELS, dtype=int)
    out = {k: np.full(LEVELS, np.nan) for k in ("base", "learned", "static", "full", "online")}
    for k in range(LEVELS):
        ok = ~np.isnan(P[:, k]) & ~np.isnan(S[:, k])
        n[k] = ok.sum()
        if n[k] == 0:
            continue
        y, p, s, t = Y[ok, k], P[ok, k], S[ok, k], T[ok]
        out["base"][k] = y.mean()
        out["learned"][k] = np.mean((p - y) ** 2)
        out["static"][k] = np.mean((s - y) ** 2)
        out["full"][k] = np.mean((y.mean() - y) ** 2)
        # online climatology: the rate among occasions resolved before this one (prior 0.5)
        resolved_before = np.searchsorted(t, t - horizon_ms, side="right")
        cum = np.concatenate([[0.0], np.cumsum(y)])
        rate = (cum[resolved_before] + 0.5) / (resolved_before + 1.0)
        out["online"][k] = np.mean((rate - y) ** 2)
    report = BrierReport(LEVELS, n, out["base"], out["learned"], out["static"], out["full"], out["online"])
    return report, {"state": engines["learned"].cascade_state(), "occasions": len(T)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=72.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--venues", nargs="*", default=None)
    ap.add_argument("--every", type=float, default=300.0)
    ap.add_argument("--horizon", type=float, default=3600.0)
    args = ap.parse_args()
    for seed in args.seeds:
        r = sim.simulate(hours=args.hours, seed=seed, venues=args.venues or None)
        rep, extra = evaluate(r, every_s=args.every, horizon_s=args.horizon)
        print(f"seed {seed}, {args.hours} h, {extra['occasions']} occasions")
        print(rep.table())
        st = extra["state"]
        print("impact exponent per level:", np.round(st["exponent"], 3))
        print("impact scale per level:", st["scale"])
        print("fraction per level:", np.round(st["fraction"], 3))
        print("platt a/b:", np.round(st["platt_a"], 2), np.round(st["platt_b"], 2))
        for key in ("brier_raw", "brier_platt", "brier_base", "brier_issued", "gate_platt", "gate_base"):
            print(f"{key}:", np.round(st[key][1:], 4))
        print("chains:", st["chains_total"], "resolved forecasts:", st["resolved_forecasts"])


if __name__ == "__main__":
    main()
