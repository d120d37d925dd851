"""How much of the learned-vs-static log-likelihood gap can the leverage mix close?

A diagnostic for issue 7, run directly::

    PYTHONPATH=src python3 tests/eval_oracle.py --seeds 1 2 3

On :mod:`heatcore.sim` (24 h, binance + bybit + okx + hyperliquid) it scores with
:func:`heatcore.evaluate` three engines on the same stream: the learned one, the
static one (prior mixes), and an *oracle* static engine whose map weights are the
simulator's true openings mix, fixed from the start (no learning). If the oracle
does not beat the static engine on log-likelihood, no mix the Leverage Learner
can find will: the gap is in the map and forecast mechanics, not in the learner.

A fourth row, ``oracle_oi``, fixes the weights to the simulator's true
*open-interest* mix at the start (the leverage mix of the open book,
:meth:`heatcore.sim.Truth.open_mix`): the share of open interest per tier, which
is what the exposure book's "all open interest as if at tier t" rows stand for.
Measured (seeds 1-5): it beats the static engine on log-likelihood on 4 of 5
seeds but loses top-decile precision on 5 of 5 (less high leverage near price).

A fifth row, ``oracle_learner``, is the learned engine with its Leverage
Learner held at the true openings mix: the simulator's mix as the learner's
prior, with a prior strength of 1e7 expected events (``learner={"prior_min":
1e7, "prior_max": 1e7}``), so the fitted opening rates are the truth scaled to
the open interest and the forecast's generated open book (forecast.hpp, H) is
built on them. If it does not beat the static engine, a better learner would
not either.
"""

from __future__ import annotations

import sys

from diag_cli import seeds_table

import heatcore as hc
from heatcore.sim import simulate

VENUES = ("binance", "bybit", "okx", "hyperliquid")
SIDES = ("long", "short")


def scores(seed: int, hours: float = 24.0) -> dict[str, tuple[float, float]]:
    """``{engine: (loglik, top_decile_precision)}`` for learned, static, oracle, oracle_oi
    and oracle_learner."""
    evaluate_mod = sys.modules["heatcore.evaluate"]
    r = simulate(hours=hours, seed=seed, venues=VENUES)
    kw = dict(symbol=r.symbol, step=r.step, progress=False)
    base = hc.evaluate(r.events, **kw).to_dict()
    plain = evaluate_mod.build_engine

    def evaluate_with(builder) -> dict:
        evaluate_mod.build_engine = builder
        try:
            return hc.evaluate(r.events, **kw).to_dict()
        finally:
            evaluate_mod.build_engine = plain

    def oracle(mix_of) -> dict:
        def with_mix(*args, **kwargs):
            eng = plain(*args, **kwargs)
            if kwargs.get("learn") is False:
                for v in VENUES:
                    for s in SIDES:
                        eng.set_mix(v, s, mix_of(v, s))
            return eng

        return evaluate_with(with_mix)

    def held_learner(*args, **kwargs):
        if kwargs.get("learn") is True:
            kwargs["priors"] = {v: (r.truth.mix(v, "long"), r.truth.mix(v, "short")) for v in VENUES}
            kwargs["learner"] = {"prior_min": 1e7, "prior_max": 1e7}
        return plain(*args, **kwargs)

    t0 = int(r.events["ts"][0])
    oracle_mix = oracle(r.truth.mix)
    oracle_oi = oracle(lambda v, s: r.truth.open_mix(v, s, at_ts=t0))
    held = evaluate_with(held_learner)
    return {"learned": (base["loglik_learned"], base["top_decile_precision_learned"]),
            "static": (base["loglik_static"], base["top_decile_precision_static"]),
            "oracle": (oracle_mix["loglik_static"], oracle_mix["top_decile_precision_static"]),
            "oracle_oi": (oracle_oi["loglik_static"], oracle_oi["top_decile_precision_static"]),
            "oracle_learner": (held["loglik_learned"], held["top_decile_precision_learned"])}


def main(argv: list[str] | None = None) -> int:
    return seeds_table(__doc__, argv, ("engine", "log-lik (nats/event)", "top-decile precision"),
                       scores)

if __name__ == "__main__":
    sys.exit(main())
