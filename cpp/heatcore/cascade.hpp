// Cascades: chain detection, the Cascade Learner and the cascade forecast walk.
//
// A *chain* is a run of observed liquidations of one side (the liquidated
// position) whose gaps are shorter than `gap_ms`. When a chain opens, the
// significant clusters of the summed map on its side (see `find_clusters`) are
// snapshotted as its levels: level k is the k-th cluster beyond the price at
// which the chain started. As the chain's extreme price crosses level k+1 the
// learner gets one observation per quantity it learns for that level:
//   (a) impact: the observed notional liquidated in the segment that ended at the
//       crossing and the relative move of that segment, fitted as
//       move = scale * notional^exponent by a weighted log-log regression;
//   (b) fraction: observed notional in the catchment of level k over the map's
//       exposure in that catchment when the chain opened;
//   (c) time: seconds from reaching level k to reaching level k+1.
// Every statistic moves by a step 1/n floored at a forgetting rate given as a
// half-life in observations (the Leverage Learner's scheme).
//
// Separately, the *chain impact law*: a chain that has liquidated Q (observed
// USD) has moved the price by scale * Q^exponent (the simulator's and the
// field's metaorder law). Fitted from timing, not from the map: the consensus
// price's return over one price tick is regressed on the increment
// Q1^b - Q0^b of the chain's notional liquidated since the tick began (the
// liquidations were triggered by prices at the tick's start, their impact lands
// within the tick). Non-linear least squares: the sufficient sums are kept for
// every b on a grid (0.30..1.50 by 0.01), b is the grid minimum of the residual
// sum of squares, scale its least-squares coefficient. Only ticks whose first
// liquidation came within kFirstLiqMs of the tick's start are used (the move
// that triggered it then lies mostly before the tick). Identified when ticks are
// as short as the impact's delay (1 s marks); with longer ticks the moves that
// triggered later liquidations in the tick still enter the return and bias b down.
//
// The forecast walks the current map from the current price (`walk`): level 1
// is reached with a volatility reach probability (reflection principle, vol
// learned from price updates); each next level either by the modelled impact of
// the previous level's expected liquidations or by volatility alone. The
// learned walk weighs the impact term by the evidence on the observed/mapped
// fraction (none before chains have crossed levels).
//
// Recalibration (per level, only from the engine's own forecasts once they have
// resolved: recorded at a cadence, resolved after the horizon against the
// consensus price, the median of the venues' marks; no lookahead):
//   * a MAP Platt fit p = sigmoid(a + b logit(raw)) on the last
//     calibration_half_life (at most 4096) resolved forecasts, Gaussian prior around the
//     identity (a = 0, b = 1), each forecast weighted 1/overlap (a new one every
//     record_every_s, each open for horizon_s: consecutive outcomes are not
//     independent);
//   * the level's base rate (forgetting mean of its outcomes);
//   * the raw walk.
// Every resolved forecast scores the three candidates as they were issued
// (running Brier, forgetting at calibration_half_life). The issued probability
// is the raw walk unless an alternative beats it by a paired significance test
// on the squared-error differences (z > 2 on at least 4 effective forecasts):
// then it moves from raw towards the better alternative in proportion to the z.
//
// Memory: every buffer is sized at construction (fixed-capacity rings for the
// chain history and the pending forecasts). Per event the tracker does O(levels)
// work and allocates nothing; a chain opening scans the map once (O(window bins)).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "heatcore/types.hpp"

namespace heatcore {

namespace serial {  // persist
class Writer;
class Reader;
}  // namespace serial

inline constexpr int kMaxCascadeLevels = 10;

struct CascadeConfig {
  std::int64_t gap_ms = 60'000;          // a longer gap closes the chain
  double horizon_s = 3600.0;             // probabilities are "reached within the horizon"
  double record_every_s = 300.0;         // cadence of the self-recorded forecasts
  double half_life = 200.0;              // forgetting of the learned statistics, in observations
  // Forgetting of the recalibration, in resolved forecasts. Longer: forecasts
  // overlap (a new one every record_every_s, each open for horizon_s), so
  // consecutive outcomes are strongly correlated.
  double calibration_half_life = 2000.0;
  double vol_half_life_s = 6.0 * 3600.0; // forgetting of the volatility estimate, in seconds (of time, not per venue)
  // Significant cluster: a local peak of the map smoothed over +-smooth_frac of
  // price, whose smoothed USD is at least min_share of the side's total within
  // max_distance of price.
  double smooth_frac = 0.0015;
  double min_share = 0.02;
  double max_distance = 0.30;
  // Priors (and the values used with learning off).
  double prior_exponent = 0.87;          // the field's power law in notional
  double prior_scale = 5e-10;            // relative move per USD^exponent ($100M -> ~0.5 %)
  double prior_residual = 1.0;           // sd of log move around the power law
  double prior_fraction = 0.5;           // observed / mapped notional
  double prior_level_time_s = 120.0;
  double prior_weight = 5.0;             // pseudo-observations behind each prior
  double prior_vol_annual = 0.6;         // until prices have been seen
  std::size_t history = 1024;            // chains kept for inspection
};

// One level of a cascade forecast.
struct CascadeLevel {
  double price = 0.0;
  double notional = 0.0;       // expected observed liquidations at the level (USD)
  double probability = 0.0;    // of being reached within the horizon
  double confidence = 0.0;     // in (0, 1]: falls with depth and with thin evidence
  double eta_s = 0.0;          // expected seconds until the level is reached
  double raw_probability = 0.0;  // before the online recalibration
};

// A significant cluster on one side of the map.
struct Cluster {
  double price = 0.0;
  double notional = 0.0;       // map USD in the cluster's catchment
  double end = 0.0;            // far edge of the catchment (price)
};

// What the chain tracker keeps per chain (fixed size).
struct ChainRecord {
  std::int64_t start_ts = 0, end_ts = 0;
  Side side = Side::none;
  double start_price = 0.0;
  double extreme_price = 0.0;  // furthest price reached in the chain's direction
  double notional = 0.0;       // observed USD in the chain
  std::uint64_t events = 0;
  int n_levels = 0;            // clusters snapshotted at the start
  int reached = 0;             // levels crossed
  std::array<double, kMaxCascadeLevels> level_price{};
  std::array<double, kMaxCascadeLevels> level_exposure{};  // map USD in the catchment at the start
  std::array<double, kMaxCascadeLevels> level_notional{};  // observed USD in the catchment
  std::array<double, kMaxCascadeLevels> level_end{};       // catchment far edge
  std::array<std::int64_t, kMaxCascadeLevels> level_ts{};  // when the level was crossed (0 = not)
};

// Online statistics of one level. Steps 1/n floored at `rate`.
struct LevelStats {
  // impact regression on x = log notional, y = log relative move
  double n_impact = 0.0, mx = 0.0, my = 0.0, mxx = 0.0, mxy = 0.0, myy = 0.0;
  double n_fraction = 0.0, f_num = 0.0, f_den = 0.0;   // weighted means of observed and mapped
  double n_time = 0.0, log_time = 0.0;
  // Platt recalibration: p = sigmoid(a + b * logit(raw)) (MAP fit on the window)
  double platt_a = 0.0, platt_b = 1.0;
  double h00 = 0.0, h01 = 0.0, h11 = 0.0;   // unused since CASC 1.1 (1.0's online Hessian)
  double n_resolved = 0.0;
};

// Track record of one level's candidates over its resolved forecasts (forgetting
// means, step 1/n floored at the calibration rate). Squared errors of the raw
// walk, the Platt fit, the base rate and the issued probability; paired
// differences (candidate - raw) and their squares for the gate's test.
struct LevelRecord {
  double n = 0.0;
  double base = 0.0;                       // mean outcome
  double e_raw = 0.0, e_platt = 0.0, e_base = 0.0, e_issued = 0.0;
  double d_platt = 0.0, d_platt2 = 0.0, d_base = 0.0, d_base2 = 0.0;
  std::uint64_t since_fit = 0;             // resolutions since the last Platt refit
  std::uint64_t stored = 0;                // resolved forecasts in the window
  std::uint64_t next = 0;                  // next window slot
};

// The recalibration's view of one level (inspection).
struct LevelCalibration {
  double platt = 0.0, base = 0.0;          // candidates' probabilities for a given raw
  double gate_platt = 0.0, gate_base = 0.0;  // in [0, 1]: how far the issued moves towards each
};

struct ImpactParams {
  double exponent, scale, residual;  // move = scale * q^exponent, log-sd residual
};

inline constexpr int kImpactGrid = 121;         // exponents 0.30, 0.31, ..., 1.50
inline constexpr double kImpactGridLo = 0.30;
inline constexpr double kImpactGridStep = 0.01;

// The chain impact law's fit (see the header comment).
struct ChainImpact {
  double exponent = 0.0, scale = 0.0;   // return = scale * Q^exponent (Q in USD)
  double residual = 0.0;                // sd of a tick's return around the law
  double n = 0.0;                       // observations (ticks with liquidations)
  bool fitted = false;                  // false: the priors (too few observations)
};

// The bins of one side of the map, in walk order (nearest to price first).
struct SideWindow {
  std::int64_t first = 0;   // absolute bin index of the nearest bin
  std::int64_t count = 0;
  int dir = -1;             // -1: walking down (longs), +1: walking up (shorts)
};

class CascadeModel {
 public:
  CascadeModel() : CascadeModel(CascadeConfig{}, 1) {}
  CascadeModel(CascadeConfig config, std::size_t venues);

  const CascadeConfig& config() const noexcept { return cfg_; }

  // The bins a walk from `price` on `side` looks at, clipped to the grid.
  SideWindow window(Side side, double price, std::int64_t k0, std::int64_t n, double step) const noexcept;
  // Significant clusters of `raw` (USD per bin, `w.count` bins in walk order),
  // nearest first, at most `max_out`. `smooth` is scratch of w.count doubles.
  // Rule: the map smoothed by a box of +-max(1, smooth_frac * price / step) bins;
  // a cluster is a local peak of it holding at least min_share of the window's
  // total; peaks closer than the box width merge into the larger. A cluster's
  // catchment runs from the smoothed minimum towards the previous cluster (or
  // the current price) to the minimum towards the next one.
  int find_clusters(const double* raw, const SideWindow& w, double step, double price,
                    Cluster* out, int max_out, double* smooth) const;

  // A price update of venue `slot` (it also moves the reference price to `price`).
  // Updates the vol estimate, the open chains' extremes and the pending
  // forecasts, and resolves those whose horizon has passed. `learn` gates every
  // learned statistic (the vol estimate is market state and always runs).
  void on_price(std::size_t slot, std::int64_t ts, double price, bool learn);
  // Does an event of `side` at `ts` open a new chain (so the caller must supply clusters)?
  bool opens_chain(std::int64_t ts, Side side) const noexcept;
  // A liquidation. `clusters` (n of them) are the side's clusters from the map
  // before the event; they are read only when the event opens a chain.
  void on_liquidation(std::int64_t ts, Side side, double price, double notional,
                      const Cluster* clusters, int n, bool learn);
  // Is a self-recorded forecast due at `ts`?
  bool forecast_due(std::int64_t ts) const noexcept;
  // Record one side's forecast (its raw probabilities are what get recalibrated).
  void record_forecast(std::int64_t ts, Side side, double price, const CascadeLevel* levels, int n);

  // Walk clusters into a forecast. `learned` false: priors, no recalibration.
  int walk(Side side, double price, const Cluster* clusters, int n, bool learned,
           CascadeLevel* out) const;

  // Inspection. Levels are 1..kMaxCascadeLevels; level 0 is the pool over levels.
  ImpactParams impact(int level) const;
  double fraction(int level) const;
  double level_time_s(int level) const;
  const LevelStats& stats(int level) const { return lv_.at(static_cast<std::size_t>(level)); }
  const LevelRecord& record(int level) const { return rec_.at(static_cast<std::size_t>(level)); }
  // The issued probability for `raw` at `level` (1..kMaxCascadeLevels) and the candidates behind it.
  double recalibrate(int level, double raw, LevelCalibration* why = nullptr) const;
  double consensus_price() const noexcept { return consensus_; }
  ChainImpact chain_impact() const noexcept;
  double vol_per_sqrt_s() const noexcept;        // sd of log price per sqrt(second)
  std::uint64_t chains_total() const noexcept { return chains_total_; }
  std::size_t history_size() const noexcept;
  std::size_t history_capacity() const noexcept { return ring_.size(); }
  // i-th chain of the history, oldest first (i < history_size()).
  const ChainRecord& history(std::size_t i) const;
  const ChainRecord& open_chain(Side side) const noexcept { return open_[static_cast<std::size_t>(side_index(side))]; }
  bool chain_open(Side side) const noexcept { return open_chain(side).events > 0; }
  std::size_t pending_forecasts() const noexcept;
  std::uint64_t resolved_forecasts() const noexcept { return resolved_; }
  std::uint64_t dropped_forecasts() const noexcept { return dropped_; }
  // Bytes held by the model's buffers: fixed at construction.
  std::size_t memory_bytes() const noexcept;

  // ---- persist (defined in serialize.cpp) ----
  // The learned state (not the config: the caller writes that). load() fills a
  // model constructed with the same config and venue count; throws
  // serial::SnapshotError. `minor`: the section's minor version (1.0 has no
  // track records, window or consensus: those start fresh).
  void save(serial::Writer& w) const;
  void load(serial::Reader& r, int minor);

 private:
  struct Pending {
    bool live = false;
    std::int64_t ts = 0;
    Side side = Side::none;
    int n = 0;
    double extreme = 0.0;
    std::array<double, kMaxCascadeLevels> price{};
    std::array<double, kMaxCascadeLevels> raw{};
    std::array<double, kMaxCascadeLevels> platt{};   // candidates as issued (scored at resolution)
    std::array<double, kMaxCascadeLevels> base{};
    std::array<double, kMaxCascadeLevels> issued{};
  };
  struct VenuePrice {
    std::int64_t ts = 0;
    double price = 0.0;
  };

  double step_size(double n) const noexcept;
  double evidence(int level) const noexcept;
  double overlap() const noexcept;   // forecasts open at once per side: horizon / cadence
  void move_chain(std::size_t si, std::int64_t ts, double price, bool learn);
  void close_chain(std::size_t si, bool learn);
  void learn_impact(int level, double q, double move);
  void learn_fraction(int level, double observed, double mapped);
  void learn_time(int level, double seconds);
  void learn_platt(int level, const Pending& p, int k, bool reached);
  void refit_platt(int level);
  double platt(int level, double raw) const noexcept;
  double base_rate(int level) const noexcept;
  void update_consensus(std::int64_t ts);
  void on_tick(std::int64_t ts, bool learn);
  void learn_chain_impact(double r, double q0, double q1);
  void resolve(Pending& p, bool learn);

  CascadeConfig cfg_;
  double rate_;                                       // forgetting floor, from the half-life
  double calib_rate_;                                 // same for the recalibration
  std::array<LevelStats, kMaxCascadeLevels + 1> lv_{};  // [0] pools every level
  std::array<ChainRecord, 2> open_{};                 // [long, short]
  std::array<double, 2> seg_q_{};                     // observed USD in the current segment
  std::array<double, 2> seg_from_{};                  // price the current segment started at
  std::array<std::int64_t, 2> seg_ts_{};              // when the current segment started
  std::vector<ChainRecord> ring_;                     // chain history, capacity cfg_.history
  std::size_t ring_next_ = 0;
  std::uint64_t chains_total_ = 0;
  std::vector<Pending> pending_;                      // fixed capacity
  std::int64_t last_record_ts_ = 0;
  bool recorded_any_ = false;
  std::uint64_t resolved_ = 0, dropped_ = 0;
  std::vector<VenuePrice> last_;                      // per venue slot
  std::vector<double> scratch_;                       // one per venue: the consensus median
  double consensus_ = 0.0;                            // median of the venues' marks
  std::array<LevelRecord, kMaxCascadeLevels + 1> rec_{};  // [0] unused
  std::size_t window_ = 0;                            // resolved forecasts kept per level
  std::vector<double> win_x_, win_y_;                 // per level: window_ resolved (logit raw, outcome)
  // Chain impact law (CASC 1.2). Ticks: price updates sharing a timestamp.
  std::int64_t tick_ts_ = 0;                          // the tick being assembled (0: none yet)
  double tick0_px_ = 0.0;                             // consensus at the start of the open interval's tick
  bool interval_open_ = false;                        // an interval [tick0, tick_ts_) awaits its end price
  std::array<double, 2> q_tick_{};                    // chain USD when the current tick began
  std::array<std::int64_t, 2> chain_tick_{};          // chain start_ts then (0: none open)
  std::array<double, 2> iv_q0_{}, iv_q1_{};           // the waiting interval's notional increments
  // CASC 1.3: offset of each side's first liquidation in the current tick (-1:
  // none) and whether the waiting interval's first liquidation came early enough.
  std::array<std::int64_t, 2> first_off_{-1, -1};
  std::array<bool, 2> iv_ok_{};
  std::array<double, kImpactGrid> imp_ff_{}, imp_fr_{};
  double imp_rr_ = 0.0, imp_n_ = 0.0, imp_count_ = 0.0;
  double vol_r2_ = 0.0, vol_dt_ = 0.0;                // discounted sums of r^2 and seconds
  std::int64_t vol_ts_ = 0;                           // CASC 1.4: last update of the vol sums (0: none)
};

}  // namespace heatcore
