"""A straightforward numpy implementation of heatcore's map model.

Not shipped with the package: the benchmark suite runs it side by side with the
C++ core, checks that both give the same maps, and reports speed ratios against
it. It follows the semantics documented in the README ("The model") with plain
array operations and no incremental bookkeeping: every price update scans every
tier's whole book, every map read recomputes the map from the book.
"""

from __future__ import annotations

import math

import numpy as np

import heatcore as hc
from heatcore.venues import DEFAULT_TIERS, get_venue, prior_weights, venue_id


class ReferenceEngine:
    """Numpy twin of ``hc.Engine(learn=False)`` for price, OI and map reads."""

    def __init__(self, symbol="BTCUSDT", step=50.0, venues=None, tiers=None, seed_spread=0.05,
                 ts_tolerance_ms=5000, max_price_ratio=10.0):
        self.step = float(step)
        self.venues = list(venues or hc.VENUES)
        self.tiers = np.asarray(tiers or DEFAULT_TIERS, dtype=float)
        self.code_to_slot = {venue_id(v): i for i, v in enumerate(self.venues)}
        nv, nt = len(self.venues), len(self.tiers)
        self.ratio = np.zeros((nv, 2, nt))
        self.w = np.zeros((nv, 2, nt))
        for i, v in enumerate(self.venues):
            mech = get_venue(v).mechanics(symbol)
            for s, code in enumerate((1, -1)):
                self.ratio[i, s] = [mech.liquidation_ratio(code, t) for t in self.tiers]
                self.w[i, s] = prior_weights(v, self.tiers)
        self.k0, self.n = 0, 0
        self.d = np.zeros((nv, 2, nt, 0))
        self.last_price = np.zeros(nv)
        self.min_price = np.zeros(nv)
        self.max_price = np.zeros(nv)
        self.own_price = np.zeros(nv, dtype=bool)
        self.oi_base = np.zeros(nv)
        self.expected = np.zeros((nv, 2))
        self.ref_price = 0.0
        self.last_ts = None
        self.seed_spread = seed_spread
        self.tol = ts_tolerance_ms
        self.max_ratio = max_price_ratio

    # -- grid ---------------------------------------------------------------
    def _bin(self, p):
        return int(np.rint(p / self.step)) if p / self.step < 2**52 else round(p / self.step)

    def _cover(self, k_lo, k_hi):
        k_lo = max(k_lo, 0)
        if self.n and self.k0 <= k_lo and k_hi < self.k0 + self.n:
            return
        if self.n == 0:
            pad = max(16, (k_hi - k_lo) // 4)
            k0 = max(0, k_lo - pad)
            n = k_hi + pad - k0 + 1
        else:
            pad = max(16, self.n // 2)
            k0 = max(0, k_lo - pad) if k_lo < self.k0 else self.k0
            hi_old = self.k0 + self.n - 1
            hi = k_hi + pad if k_hi > hi_old else hi_old
            n = hi - k0 + 1
        d = np.zeros((*self.d.shape[:3], n))
        if self.n:
            d[..., self.k0 - k0:self.k0 - k0 + self.n] = self.d
        self.d, self.k0, self.n = d, k0, n

    def _cover_entries(self, slot, lo, hi):
        rmin = min(self.ratio[slot].min(), 1.0)
        rmax = max(self.ratio[slot].max(), 1.0)
        self._cover(math.floor(self._bin(lo) * rmin) - 2, math.ceil(self._bin(hi) * rmax) + 2)

    # -- updates --------------------------------------------------------------
    def _time_ok(self, ts):
        return self.last_ts is None or ts >= self.last_ts - self.tol

    def _touch(self, ts):
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)

    def _price_ok(self, slot, p):
        if not math.isfinite(p) or p <= 0:
            return False
        last = self.last_price[slot] if self.last_price[slot] > 0 else self.ref_price
        return not (last > 0 and (p > last * self.max_ratio or p < last / self.max_ratio))

    def _apply_price(self, slot, p):
        if self.n:
            u = p / self.step
            e = np.arange(self.k0, self.k0 + self.n, dtype=float)
            for s in range(2):
                lvl = e[None, :] * self.ratio[slot, s][:, None]
                hit = (lvl >= u) if s == 0 else (lvl <= u)
                # the core stops at the first crossed tier range; equivalent for monotone levels
                gone = np.where(hit, self.d[slot, s], 0.0)
                self.expected[slot, s] += float((self.w[slot, s][:, None] * gone * lvl * self.step).sum())
                self.d[slot, s][hit] = 0.0
        self.last_price[slot] = p
        self.min_price[slot] = min(self.min_price[slot], p) if self.min_price[slot] > 0 else p
        self.max_price[slot] = max(self.max_price[slot], p)

    def update_price(self, slot, ts, p):
        if not self._time_ok(ts) or not self._price_ok(slot, p):
            return False
        self._touch(ts)
        self.own_price[slot] = True
        self._apply_price(slot, p)
        self.ref_price = p
        for other in range(len(self.venues)):
            if not self.own_price[other]:
                self._apply_price(other, p)
        return True

    def update_open_interest(self, slot, ts, oi_usd, price=0.0):
        if not self._time_ok(ts) or not math.isfinite(oi_usd) or oi_usd <= 0:
            return False
        if price == 0.0:
            price = self.last_price[slot] if self.last_price[slot] > 0 else self.ref_price
        if price <= 0 or not self._price_ok(slot, price):
            return False
        q = oi_usd / price
        first = self.oi_base[slot] == 0.0
        lo = hi = price
        if first:
            lo = min(self.min_price[slot] or price, price * (1 - self.seed_spread))
            hi = max(self.max_price[slot] or price, price * (1 + self.seed_spread))
        self._cover_entries(slot, lo, hi)
        self._touch(ts)
        if first:
            self._seed(slot, price, q, lo, hi)
        else:
            e_now = self._bin(price) - self.k0
            for s in range(2):
                tot = self.d[slot, s].sum(axis=1)
                for t in range(len(self.tiers)):
                    if tot[t] < q:
                        self.d[slot, s, t, e_now] += q - tot[t]
                    elif tot[t] > q:
                        self.d[slot, s, t] *= q / tot[t]
        self.oi_base[slot] = q
        return True

    def _seed(self, slot, price, q, lo, hi):
        seen_lo = self.min_price[slot] or price
        seen_hi = self.max_price[slot] or price
        e = np.arange(self._bin(lo), self._bin(hi) + 1)
        for s in range(2):
            for t in range(len(self.tiers)):
                lvl = e * self.ratio[slot, s, t] * self.step
                keep = lvl < seen_lo if s == 0 else lvl > seen_hi
                idx = e[keep] if keep.any() else np.array([self._bin(price)])
                self.d[slot, s, t, idx - self.k0] += q / idx.size

    def ingest(self, events):
        for ev in events:
            slot = self.code_to_slot.get(int(ev["venue"]))
            if slot is None:
                continue
            kind = int(ev["kind"])
            if kind == 0:
                self.update_price(slot, int(ev["ts"]), float(ev["price"]))
            elif kind == 1:
                self.update_open_interest(slot, int(ev["ts"]), float(ev["value"]), float(ev["price"]))
            elif kind == 2 and self._time_ok(int(ev["ts"])) and self._price_ok(slot, float(ev["price"])):
                if int(ev["side"]) in (1, -1) and math.isfinite(ev["value"]) and ev["value"] > 0:
                    self._touch(int(ev["ts"]))

    # -- reads ------------------------------------------------------------------
    def heatmap(self, slot=None):
        prices = (self.k0 + np.arange(self.n)) * self.step
        out = np.zeros((2, self.n))
        slots = range(len(self.venues)) if slot is None else [slot]
        e = np.arange(self.k0, self.k0 + self.n, dtype=float)
        for v in slots:
            for s in range(2):
                x = e[None, :] * self.ratio[v, s][:, None]
                k = np.floor(x)
                frac = x - k
                usd = self.w[v, s][:, None] * self.d[v, s] * x * self.step
                i = (k - self.k0).astype(np.int64)
                ok = (i >= 0) & (i + 1 < self.n) & (self.d[v, s] != 0)
                np.add.at(out[s], i[ok], (usd * (1 - frac))[ok])
                np.add.at(out[s], i[ok] + 1, (usd * frac)[ok])
        return prices, out[0], out[1]

    def tier_totals(self, slot, side):
        return self.d[slot, 0 if side == "long" else 1].sum(axis=1)
