// The horizon forecast: expected liquidation notional per price bin within a
// horizon, and the online state behind it.
//
// A liquidation map is not a forecast: liquidations cluster in time, and the
// next one usually happens at the current price, where the map is empty because
// price has just consumed those levels. The forecast of venue v, side s, bin x,
// horizon h is an intensity made of two parts,
//
//   F(x) = a[v][s] * H[v][s](x) * reach(x, h)                  (exposure reached)
//        + b[v][s] * R[v][s] * (1 - exp(-h / tau)) * K(x)       (continuation)
//        + c[v][s] * B[v][s] * (1 - exp(-h / tau_b)) * reach(x, h) / N(h)   (background)
//
//  * H[v][s]: the exposure at trigger level x. Where the Leverage Learner has
//    fitted the venue side, the open book its model generates
//    (SideBook::generative_map): each tier's recent openings at the fitted
//    opening rate u_t, aged by the tier's closing hazard and crossed by price,
//    plus the book older than the first OI reading where the exposure book
//    holds it. The exposure book itself keeps "all open interest as if at tier
//    t" in every row, so old high-leverage entries that price never crossed
//    stay near it for days; the generated book holds high leverage only where
//    it was opened within its lifetime. A position may also close before price
//    gets to its level: in the horizon forecast (not in the EM's 60 s map) each
//    tier's part of H at x is scaled by E[exp(-tau_x / L_t) | tau_x <= h], tau_x
//    the first-passage time to x under the reach law and L_t the learner's
//    lifetime of the tier (Engine::fill_survival; `closing_hazard`). Measured on
//    heatcore.sim (4 venues, 24 h, seeds 1-5) against the openings-mix-weighted
//    exposure book: log-likelihood +0.02..+0.15 nats/event on every seed,
//    top-decile precision -0.001..+0.041 (tests/test_evaluate.py).
//    Otherwise (learn=False, a frozen venue, before the learner's first
//    refresh, or generative_map off) H is the exposure book's map, undiscounted.
//  * reach(x, h): probability that price touches x within h. Brownian running
//    maximum, P(M >= z) = erfc(z / sqrt 2) with z = |ln(x / p)| / (sigma sqrt h),
//    replaced online by the empirical law of realised excursions (fat tails,
//    jumps): every `checkpoint_every_s` a checkpoint records the price, and once
//    it is `ref_horizon_s` old its largest up and down moves, in units of the
//    sigma it was issued with, join a decayed histogram of z seeded with
//    `calib_prior_n` Brownian pseudo-observations.
//  * sigma: EWMA of squared log returns per second (returns over at least
//    `vol_min_dt_s`, time constant `vol_tau_s`).
//  * R[v][s]: recent liquidation notional, decayed with time constant `burst_tau_s`;
//    a self-exciting (Hawkes) term with exponential kernel: what a past event adds
//    to the expected notional of the next h seconds is b * q * e^{-age/tau} * (1 - e^{-h/tau}).
//  * K: where liquidations land relative to the venue/side's last one, learned
//    online: a decayed histogram of signed offsets in bins (+-kOffsetHalf) of
//    events from the last liquidation before the latest refresh (so it covers
//    the drift of a burst over up to `em_every_s`, the cadence at which the
//    forecast is meant to be read), if that is at most `burst_tau_s` old, seeded with
//    `offset_prior_n` pseudo-events of a discrete Laplace of `offset_prior_bins`.
//    Real feeds have structure here (OKX reports bankruptcy prices: bursts
//    alternate between levels a maintenance margin apart). When the last event
//    is `age` old, K is widened by price diffusion since, a Laplace of scale
//    sigma * sqrt(age) (exact convolution up to 8 bins, moments beyond).
//  * B[v][s]: the same with a slow time constant `base_tau_s`, spread like the
//    distance-only map (reach normalised over bins, N(h) = sum of reach): the
//    liquidations the map cannot place, near wherever price goes.
//  * The map holds trigger levels; venues report other prices (OKX and Bybit the
//    bankruptcy price, a maintenance margin beyond). The map part is shifted by a
//    learned offset d[v][s] in bins (+-kShiftHalf): each candidate shift keeps a
//    decayed log-likelihood of the events under the whole forecast with the map
//    so shifted (`shift_forget` per event, a prior of `shift_prior_nats` per bin
//    away from 0); the best one is used.
//  * a, b, c: per venue and side, fitted online by EM for a Poisson intensity
//    mixture: each liquidation splits its notional between the two parts in
//    proportion to their intensities at its price (the state just before it);
//    a = sum(attributed to the map) / integral(map intensity dt), the same for b, c;
//    statistics decay with `em_tau_s` and are shrunk toward the priors with
//    `em_prior_n` pseudo-events. a absorbs what the map cannot know (sampled
//    feeds, OI level); b is the branching ratio of the cascade term.
//    The map part of an event's intensity is read from the map as it stood at the
//    last refresh (at most `em_every_s` old), not at the event: price has usually
//    just crossed, and so consumed, the very levels the event liquidates. It is
//    the exposure price can reach before the next refresh, H * reach(x, Dt) / Dt
//    with Dt = `em_map_horizon_s`: what is being liquidated now, not the average
//    of the next hour (which would credit far levels with present events).
//
// Thread safety: owned by an Engine, same rules. No allocation after construction.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "heatcore/book.hpp"
#include "heatcore/types.hpp"

namespace heatcore {

struct ForecastConfig {
  double vol_tau_s = 6 * 3600.0;
  double vol_min_dt_s = 60.0;
  double vol_prior_annual = 0.8;      // sigma before any return: 80 %/year
  double ref_horizon_s = 3600.0;      // recalibration horizon (and the EM's)
  double checkpoint_every_s = 300.0;
  double calib_forget = 0.998;        // per finished checkpoint
  double calib_prior_n = 50.0;
  double burst_tau_s = 3600.0;       // Hawkes decay (sim and OKX: 1 h beats 15 min on both scores)
  double base_tau_s = 6 * 3600.0;
  double em_every_s = 60.0;           // map intensities are re-integrated on this clock
  // The map's intensity in the EM: exposure x reach(x, em_map_horizon_s) / em_map_horizon_s,
  // where price can get before the next refresh.
  double em_map_horizon_s = 60.0;
  double em_tau_s = 3 * 86400.0;
  double em_prior_n = 20.0;
  double reach_prior = 0.2;           // a before evidence (sim: fitted a = 0.03-0.4)
  double cont_prior = 0.5;            // b before evidence
  double background_prior = 0.3;      // c before evidence
  double offset_prior_n = 10.0;
  double offset_prior_bins = 2.0;
  double offset_forget = 0.999;       // per event
  double shift_forget = 0.998;        // per event
  double shift_prior_nats = 0.2;      // initial penalty per bin of map shift
  double liq_anchor_after_s = 300.0;  // a price older than this yields to a later liquidation price
  bool learn = true;                  // false freezes sigma's calibration and a, b at their priors
  bool generative_map = true;         // H from the learner's generated open book (see above)
  bool closing_hazard = true;         // ...less what closes before price gets there (see above)
};

struct VenueForecastState {
  // continuation (Hawkes) term, per side [long, short]
  double burst[2] = {0.0, 0.0};       // R, USD, decayed to burst_ts
  double burst_ts[2] = {0.0, 0.0};    // seconds
  double anchor[2] = {0.0, 0.0};      // last liquidation price (0 = none)
  double anchor_ts[2] = {0.0, 0.0};
  double snap_anchor[2] = {0.0, 0.0};  // anchor as of the last refresh
  double snap_anchor_ts[2] = {0.0, 0.0};
  // background term, per side
  double base[2] = {0.0, 0.0};        // B, USD, decayed to base_ts
  double base_ts[2] = {0.0, 0.0};
  // EM statistics (decayed), per side
  double num_map[2] = {0.0, 0.0}, den_map[2] = {0.0, 0.0};
  double num_cont[2] = {0.0, 0.0}, den_cont[2] = {0.0, 0.0};
  double num_bg[2] = {0.0, 0.0}, den_bg[2] = {0.0, 0.0};
  double events[2] = {0.0, 0.0};
  double map_rate[2] = {0.0, 0.0};    // a-free map intensity, USD/s, at the last refresh
  // a-free map intensity per bin (USD/s/bin) at the last refresh, bins lagged_k0 + i
  std::vector<double> lagged[2];
  std::int64_t lagged_k0[2] = {0, 0};
  double a[2] = {1.0, 1.0}, b[2] = {0.5, 0.5}, c[2] = {0.3, 0.3};
  std::uint64_t unexplained[2] = {0, 0};  // events no part could explain
  // continuation kernel: offsets -kOffsetHalf..kOffsetHalf (bins), normalised, and
  // its first two moments (for wide diffusion)
  std::vector<double> shift_score[2];   // per candidate shift -kShiftHalf..kShiftHalf
  int shift[2] = {0, 0};                // the map's shift in bins (reported - trigger)
  std::vector<double> offsets[2];
  std::vector<double> kernel[2];
  double kernel_mean[2] = {0.0, 0.0}, kernel_var[2] = {0.0, 0.0};
};

class Forecaster {
 public:
  static constexpr int kCalibBins = 200;        // z histogram, width kCalibDz
  static constexpr double kCalibDz = 0.05;
  static constexpr int kMaxCheckpoints = 64;
  static constexpr int kOffsetHalf = 64;
  static constexpr int kShiftHalf = 48;

  Forecaster() = default;
  Forecaster(const ForecastConfig& cfg, std::size_t venues);

  const ForecastConfig& config() const noexcept { return cfg_; }
  const VenueForecastState& venue(std::size_t slot) const { return venues_.at(slot); }
  // [calibrator] The map's shift (reported - trigger, bins) measured by the Exchange
  // Calibrator, which sees the venue's own mark: it replaces the learned one.
  void set_shift(std::size_t slot, int s, int d) {
    venues_.at(slot).shift[s] = std::max(-kShiftHalf, std::min(kShiftHalf, d));
  }

  // Inputs from the engine (accepted events only, in time order).
  void on_price(std::int64_t ts_ms, double price);
  void on_liquidation(std::size_t slot, Side side, std::int64_t ts_ms, double price, double notional_usd,
                      double step);
  bool refresh_due(std::int64_t ts_ms) const noexcept { return ts_ms >= next_refresh_ms_; }
  // Re-integrate the map intensities and refit a, b. `map_of(slot, side_index)`
  // returns the venue side's map (USD at the level on grid g's bins, valid until
  // the next call); called by the engine on the `em_every_s` clock.
  template <class MapOf>
  void refresh(std::int64_t ts_ms, const PriceGrid& g, MapOf&& map_of) {
    begin_refresh(ts_ms, g);
    for (std::size_t v = 0; v < venues_.size(); ++v)
      for (int s = 0; s < 2; ++s) lag_map(g, map_of(v, s), venues_[v], s);
    end_refresh();
  }

  // Model reads.
  double anchor_price() const noexcept;          // the price reach is measured from (0 = none)
  double sigma(double horizon_s) const noexcept;  // log-price sd over the horizon
  double reach(double log_distance, double horizon_s) const noexcept;
  // Survival of the standardised excursion z, calibrated (Brownian when learn = false or no data).
  double survival(double z) const noexcept;
  double variance_rate() const noexcept { return var_rate_; }
  double calibration_observations() const noexcept { return calib_n_; }
  double now_s() const noexcept { return now_s_; }

  // persist: the online state (not the config: the caller writes that). load()
  // fills a copy and commits only if the bytes are valid (serialize.cpp, FCST);
  // `step` is the engine's bin width (prices are checked like the engine's).
  void save(serial::Writer& w) const;
  void load(serial::Reader& r, double step);

  // The forecast of one venue (slot >= 0) or the sum over venues (slot < 0) on
  // bins k_lo .. k_lo+n-1 (absolute bin indices), USD per bin. `reach_out`
  // (size n, required) receives reach(x, h) for the distance-only baseline.
  // `map_of(slot, side_index)` gives the venue side's map (as in refresh), `g` the grid.
  template <class MapOf>
  void fill(const PriceGrid& g, MapOf&& map_of, int slot, double horizon_s, std::int64_t k_lo,
            std::int64_t n, double* long_out, double* short_out, double* reach_out) const {
    fill_reach(g.step, horizon_s, k_lo, n, reach_out);
    const double* reach = reach_out;
    for (std::int64_t i = 0; i < n; ++i) long_out[i] = short_out[i] = 0.0;
    const std::size_t v0 = slot < 0 ? 0 : static_cast<std::size_t>(slot);
    const std::size_t v1 = slot < 0 ? venues_.size() : v0 + 1;
    for (std::size_t v = v0; v < v1; ++v) {
      add_venue(g, map_of(v, 0), v, 0, horizon_s, k_lo, n, reach, long_out);
      add_venue(g, map_of(v, 1), v, 1, horizon_s, k_lo, n, reach, short_out);
    }
  }

 private:
  struct Checkpoint {
    double ts = 0.0, log_p = 0.0, sd = 0.0, up = 0.0, down = 0.0;
  };
  void begin_refresh(std::int64_t ts_ms, const PriceGrid& g);
  void end_refresh();
  void advance(VenueForecastState& v, int s, double t) const;
  // Sum of reach over bins (the distance-only map's normaliser), in bins.
  double reach_norm(double price, double horizon_s, double step) const noexcept;
  void lag_map(const PriceGrid& g, const double* map, VenueForecastState& v, int s) const;
  // Continuation kernel at `offset` bins from the anchor, widened by diffusion scale `wide` (bins).
  double cont_kernel(const VenueForecastState& v, int s, double offset, double wide) const;
  double diffusion_bins(const VenueForecastState& v, int s, double step) const;
  void rebuild_kernel(VenueForecastState& v, int s) const;
  void fill_reach(double step, double horizon_s, std::int64_t k_lo, std::int64_t n, double* out) const;
  void add_venue(const PriceGrid& g, const double* map, std::size_t v, int s, double horizon_s,
                 std::int64_t k_lo, std::int64_t n, const double* reach, double* out) const;
  void rebuild_survival();
  void finish_checkpoint(const Checkpoint& c, double age_s);

  ForecastConfig cfg_;
  std::vector<VenueForecastState> venues_;
  // volatility
  double var_rate_ = 0.0;          // per second
  double sample_ts_ = 0.0, sample_log_p_ = 0.0;
  bool have_sample_ = false;
  double last_price_ = 0.0, last_price_ts_ = 0.0;
  double last_liq_price_ = 0.0, last_liq_ts_ = 0.0;
  double now_s_ = 0.0;
  // reach recalibration
  std::vector<Checkpoint> ring_;   // kMaxCheckpoints, circular
  int ring_head_ = 0, ring_size_ = 0;
  double last_checkpoint_ts_ = -1e300;
  std::vector<double> calib_count_;   // kCalibBins + 1 (last: overflow), decayed observations
  std::vector<double> calib_prior_;   // Brownian pseudo-observations, same bins
  std::vector<double> surv_;          // survival at bin edges, kCalibBins + 1
  double calib_n_ = 0.0;
  std::vector<double> prior_kernel_;  // offset_prior_n * Laplace(offset_prior_bins), per offset
  // reach(x, ref_horizon) / ref_horizon on bins lag_k0_ + i at the last refresh (all venues)
  std::vector<double> lag_reach_;
  std::int64_t lag_k0_ = 0;
  double mean_z_ = 0.0;               // integral of the survival: E[z]
  // EM clock
  std::int64_t next_refresh_ms_ = std::numeric_limits<std::int64_t>::min();
  double refresh_ts_ = 0.0;
  bool refreshed_ = false;
};

}  // namespace heatcore
