// The Exchange Calibrator: per venue and side, online estimates (with
// uncertainty and effective sample size) of where reality departs from the
// venue's documented mechanics.
//
//  * report offset  delta = ln(reported price / trigger price), per price kind.
//    The trigger is the mark price, so a venue mark at most `fresh_ms` old at the
//    event stands for it. This is measured without the map or the mix: it cannot
//    absorb a leverage-mix error, and the Leverage Learner cannot absorb it.
//  * rate scale  s = effective maintenance rate / documented rate. For reports
//    at the bankruptcy price (and "order" reports, which venues place at it),
//    bankruptcy / liquidation price = 1 - m - f (long; 1 + m + f short, linear
//    generic formula), so the offset measures m directly: s is the value at which
//    the venue's mechanics reproduce the measured offset (bisection on the
//    mechanics, at `ref_leverage`). Other conventions (trade print, fill, mark)
//    carry no information on m that is separable from the leverage mix, so their
//    rate scale stays at the registry's prior and says so (source "prior").
//    When a bankruptcy/order offset implies a scale outside [scale_min, scale_max]
//    the venue does not report what it documents: the convention is flagged as
//    departing and the offset is not used for the rate.
//  * size cap: the distribution of liquidated notional (log-normal moments and
//    the maximum), and the largest leverage the venue's brackets allow at its
//    99th percentile (a position larger than the bracket cannot carry that leverage).
//  * cross margin is NOT learned here: from liquidation prices alone a cross
//    position dying far from entry is indistinguishable from a lower-leverage
//    isolated one. It stays a documented per-venue prior (Python registry).
//
// Estimators: a location M-estimate (Huber) per stream, started from the median of
// the first `kWarm` observations (so a documented prior far from the truth does
// not make every early observation look like an outlier), then updated online
// with gain 1/n, n capped at `max_n_eff` (old evidence fades); residuals are
// clipped at `huber_c` robust spreads, the spread being the MAD of the last
// `kRing` residuals about their own median. A run of `kShiftRun` residuals
// clipped on the same side is a level shift (the venue changed its tiers or its
// reports, or the first events were contaminated, e.g. by a price jump), and
// restarts the estimate from the run's last `kWarm` residuals. The documented
// value enters as a Gaussian prior (mean, sd) combined by precision with the data
// estimate; a systematic sd (`systematic_sd`) is added for the mark overshoot.
//
// Identifiability. A wrong maintenance rate moves every level of a side by about
// dm in ln price, and a different leverage mix can mimic that from the map's point
// of view. The two learners must therefore not fit the same residual. The
// calibrator uses only evidence that does not pass through the map: the reported
// price against the venue's own mark. It never reads the book, the mix or the
// Leverage Learner, so it cannot absorb a mix error, and the learner cannot
// absorb a rate the calibrator has measured: the calibrator moves the levels
// (Engine::apply_calibration), the learner fits the mix on the moved levels, and
// its window is mapped back by the measured offset and widened by its sd.
// The cost of this choice: where reports carry no separable information on the
// rate (trade print, fill, mark), the rate keeps the registry's value.
//
// Thread safety: owned by an Engine, same rules. No allocation after construction.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "heatcore/mechanics.hpp"
#include "heatcore/types.hpp"

namespace heatcore {

namespace serial {
class Writer;
class Reader;
}  // namespace serial

struct CalibratorConfig {
  std::int64_t fresh_ms = 1000;   // a venue mark at most this old stands for the trigger
  double huber_c = 2.0;           // Huber threshold, in robust-scale units
  double sigma_floor = 2e-5;      // floor on the per-event spread of ln(reported / trigger)
  double max_n_eff = 2000.0;      // effective sample size saturates here (forgetting)
  // Systematic sd added to every offset estimate: the mark is sampled at or beyond
  // the trigger it crossed, so ln(reported / mark) carries a small bias that no
  // number of events removes (about 0.5 bp in the simulator with 1 s marks).
  double systematic_sd = 5e-5;
  double scale_min = 1.0 / 3.0;   // plausible range of the rate scale; outside it the
  double scale_max = 3.0;         // reported convention, not the rate, departs
  double scale_prior_sd = 0.5;    // prior sd of ln(rate scale) around the registry's 1
  // Leverage at which the offset is inverted for the rate (it matters for inverse and
  // mm-at-entry formulas only): liquidated positions are mostly highly leveraged
  // (BitMEX study, exchanges.md section 8: about 60x on average).
  double ref_leverage = 50.0;
  double apply_rel = 0.01;        // re-place levels when the scale moved by this fraction
  std::uint32_t apply_every = 16; // ... checked every this many used events
  double depart_z = 4.0;          // |data - documented| / sd beyond this: "departs"
  bool widen_kernel = true;       // widen the Leverage Learner's window by the offset's sd
  void validate() const;
};

// Online robust location (Huber M-estimate) of one stream of residuals. Fixed
// size: no allocation per observation.
class RobustLocation {
 public:
  static constexpr int kWarm = 9;    // the estimate starts from the median of this many
  static constexpr int kRing = 32;   // the spread is the MAD of this many recent residuals
  static constexpr int kSpreadEvery = 8;  // ... recomputed every this many observations
  // This many consecutive residuals clipped on the same side, against as many
  // different marks, restart the estimate.
  static constexpr int kShiftRun = 12;
  // `group` is the reference the residual was measured against (the mark's time):
  // residuals sharing one mark are not independent evidence of a level shift. A
  // price jump liquidates a whole burst against one stale mark, every report of it
  // far on one side; counted one by one it read as a level shift and restarted the
  // estimate from the burst (measured: the short offsets of htx and kraken fell
  // from +17 and +21 bins to -1 and 0 for five minutes after a 3 % jump).
  void add(double x, double max_n, double c, double sigma_floor, std::int64_t group = 0);
  std::int64_t run_group() const noexcept { return run_group_; }
  void set_run_group(std::int64_t g) noexcept { run_group_ = g; }
  bool empty() const noexcept { return count_ == 0; }
  double mean() const noexcept;     // data estimate (no prior)
  double sigma() const noexcept;    // robust per-observation spread
  double n_eff() const noexcept { return nw_ < kWarm ? nw_ : n_; }
  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t clipped() const noexcept { return clipped_; }
  std::uint64_t restarts() const noexcept { return restarts_; }
  void save(serial::Writer& w) const;
  void load(serial::Reader& r);

 private:
  static double median_n(double* v, int n);
  static double spread_of(const double* v, int n, double floor);
  std::array<double, kWarm> warm_{};
  std::array<double, kRing> ring_{};
  int nw_ = 0, nring_ = 0, run_ = 0;
  std::int64_t run_group_ = 0;   // the mark of the run's last counted residual
  std::size_t ring_pos_ = 0;
  double mu_ = 0.0, n_ = 0.0, sigma_floor_ = 2e-5, sd_ = 0.0;
  // sigma() is read several times per event (offset, learner window, forecast):
  // computed once after each observation. Reads are serialised by the engine's owner.
  mutable double sigma_cache_ = 0.0;
  mutable bool sigma_dirty_ = true;
  std::uint64_t count_ = 0, clipped_ = 0, restarts_ = 0;
};

// A value with its uncertainty: the posterior of a Gaussian prior and the data.
struct Estimate {
  double value = 0.0;
  double sd = 0.0;
  double n_eff = 0.0;     // effective number of events behind the data part
  double prior = 0.0;
  double prior_sd = 0.0;
  bool departs = false;   // data disagree with the documented prior (|z| > depart_z)
};

enum class RateSource : int { prior = 0, bankruptcy_offset = 1, convention_departs = 2 };

struct CalibSide {
  std::array<RobustLocation, 6> offset;   // by PriceKind
  std::array<double, 6> offset_prior{};   // documented ln(reported / trigger)
  std::array<double, 6> offset_prior_sd{};
  double scale = 1.0, scale_sd = 0.0, scale_n = 0.0;  // current rate-scale estimate
  RateSource scale_source = RateSource::prior;
  double applied_scale = 1.0;             // scale the book's levels were last placed with
  std::uint32_t since_check = 0;
  // notional distribution (ln USD), exponentially weighted with gain 1/min(n, max_n)
  double lq_mean = 0.0, lq_var = 0.0, lq_n = 0.0, q_max = 0.0;
  std::uint64_t used = 0, no_reference = 0;
  // The mark the side's last used residuals were measured against, and how many.
  std::int64_t ref_mark_ts = 0;
  std::uint32_t ref_mark_used = 0;
};

class Calibrator {
 public:
  // At most this many liquidations of a side are measured against one mark; the
  // rest count as no_reference. A mark stands for the trigger only while price
  // stands still: a burst of hundreds of liquidations against one stale mark (a
  // price jump) is not that many independent residuals, and would fill the
  // spread's ring with the jump.
  static constexpr std::uint32_t kPerMark = 8;
  Calibrator() = default;
  Calibrator(const CalibratorConfig& cfg, const std::vector<Mechanics>& mechanics,
             const std::vector<PriceKind>& documented_kind);

  const CalibratorConfig& config() const noexcept { return cfg_; }
  // New settings; forgets every estimate (documented kinds and marks are kept).
  void reset(const CalibratorConfig& cfg);
  std::size_t venue_count() const noexcept { return mech_.size(); }

  // A venue's own mark price (the engine calls it on every accepted price update).
  void on_mark(std::size_t slot, std::int64_t ts, double price) noexcept {
    mark_ts_[slot] = ts;
    mark_px_[slot] = price;
  }
  // One observed liquidation. Returns true when the rate scale has moved enough
  // that the engine should re-place the side's levels (see applied_scale()).
  bool observe(std::size_t slot, Side side, PriceKind kind, double reported, double notional_usd,
               std::int64_t ts) noexcept;
  // The engine placed the side's levels with `scale`.
  void mark_applied(std::size_t slot, Side side, double scale) noexcept {
    at(slot, side).applied_scale = scale;
  }

  // Current estimates.
  Estimate offset(std::size_t slot, Side side, PriceKind kind) const;
  Estimate rate_scale(std::size_t slot, Side side) const;
  // The scale levels should be placed with: the estimate once it departs
  // significantly from the registry's (|ln s| > depart_z sd), else 1.
  double placement_scale(std::size_t slot, Side side) const;
  // The venue departs from its documentation on this side, on evidence (at least
  // kWarm events): its reports sit elsewhere than documented, its convention is
  // not the documented one, or its levels were re-placed.
  bool departs(std::size_t slot, Side side) const;
  RateSource rate_source(std::size_t slot, Side side) const { return at(slot, side).scale_source; }
  double applied_scale(std::size_t slot, Side side) const { return at(slot, side).applied_scale; }
  PriceKind documented_kind(std::size_t slot) const { return doc_kind_.at(slot); }
  // The kind the venue documents for its reports (events of kind "unknown" are read as it).
  void set_documented_kind(std::size_t slot, PriceKind kind) { doc_kind_.at(slot) = kind; }
  // A venue without a public liquidation feed keeps its priors: whatever
  // liquidations reach the engine for it (a third party's estimates, a mislabelled
  // stream) are not evidence on its mechanics, and are not observed.
  void set_has_feed(std::size_t slot, bool on) { has_feed_.at(slot) = on ? 1 : 0; }
  bool has_feed(std::size_t slot) const { return has_feed_.at(slot) != 0; }
  // The trigger (mark) price a report of this kind stands for: reported * exp(-offset).
  double trigger_of(std::size_t slot, Side side, PriceKind kind, double reported) const;
  // Relative (log-price) sd of where a liquidation level sits, from the rate
  // scale's and the offset's uncertainty: the Leverage Learner's kernel widens by it.
  double level_sigma(std::size_t slot, Side side) const;
  // Effective maintenance rate at `ref_leverage` under the current scale and documented.
  double maintenance_rate(std::size_t slot, Side side, double scale) const;
  // Largest leverage the venue's brackets allow for a position of this notional.
  double max_leverage_at(std::size_t slot, double notional_usd) const;
  const CalibSide& side_state(std::size_t slot, Side side) const { return at(slot, side); }
  // Snapshots (section CALB, written by Engine::save_learner_sections): settings,
  // documented kinds, marks and every estimate, exactly. load() throws
  // serial::SnapshotError on a mismatch and leaves *this unchanged.
  void save(serial::Writer& w) const;
  void load(serial::Reader& r);
  static void save_config(serial::Writer& w, const CalibratorConfig& c);
  static CalibratorConfig load_config(serial::Reader& r);
  // The documented offset of a report kind for this venue (ln reported / trigger).
  double documented_offset(std::size_t slot, Side side, PriceKind kind, double scale = 1.0) const;

 private:
  CalibSide& at(std::size_t slot, Side side) { return state_.at(slot * 2 + static_cast<std::size_t>(side_index(side))); }
  const CalibSide& at(std::size_t slot, Side side) const {
    return state_.at(slot * 2 + static_cast<std::size_t>(side_index(side)));
  }
  void refresh_scale(std::size_t slot, Side side);
  // ln(bankruptcy / liquidation price) at `leverage` (default: ref_leverage).
  double bankruptcy_offset(std::size_t slot, Side side, double scale, double leverage = 0.0) const;

  CalibratorConfig cfg_;
  std::vector<Mechanics> mech_;
  std::vector<PriceKind> doc_kind_;
  std::vector<std::uint8_t> has_feed_;  // per venue: 0 = no public feed, never observed
  std::vector<CalibSide> state_;       // [slot * 2 + side_index]
  std::vector<std::int64_t> mark_ts_;
  std::vector<double> mark_px_;
};

const char* price_kind_name(PriceKind k) noexcept;
const char* rate_source_name(RateSource s) noexcept;

}  // namespace heatcore
