// The engine of one symbol: a shared price grid, one exposure book per venue and
// side, the venue mechanics, and the points where the three learners plug in.
//
// Thread safety: an Engine is not synchronised. Callers must not mutate it from
// two threads at once, nor read it while another thread mutates it; forecast()
// and cascade() also use the engine's scratch buffers, so two of those must not
// run at once either. The Python layer enforces all of this with a lock.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "heatcore/book.hpp"
#include "heatcore/calibrator.hpp"
#include "heatcore/forecast.hpp"  // [forecast]
#include "heatcore/leverage_learner.hpp"
#include "heatcore/cascade.hpp"
#include "heatcore/mechanics.hpp"
#include "heatcore/serialize.hpp"
#include "heatcore/types.hpp"

namespace heatcore {

struct VenueConfig {
  std::string name;
  std::uint16_t registry_id = 0;     // the id used in Event::venue
  Mechanics mechanics;
  std::vector<double> prior_long;    // prior mix over the tier support (sums to 1)
  std::vector<double> prior_short;
  // Documented cross-margin prior (venues.json): share of positions in cross
  // margin and how much farther from entry they die. Used by the Leverage Learner.
  double cross_share = 0.0;
  double cross_distance = 1.0;
};

struct EngineConfig {
  double step = 50.0;
  std::vector<double> tiers;          // leverage support, ascending
  std::vector<VenueConfig> venues;
  bool learn = true;
  // Book before the first OI reading: entries spread uniformly over the price
  // range seen so far, widened to at least +-seed_spread around the current price.
  double seed_spread = 0.05;
  std::int64_t ts_tolerance_ms = 5000;  // accepted lateness before out_of_order
  double max_price_ratio = 10.0;       // a price this many times away from the last is absurd
  std::int64_t max_bins = 4'000'000;   // grid growth limit
  // [calibrator] begin
  bool calibrate = true;               // Exchange Calibrator on (only acts while learning)
  CalibratorConfig calibrator;
  // [calibrator] end
  ForecastConfig forecast;             // [forecast] horizon forecast (forecast.hpp)
  LearnerConfig learner;               // Leverage Learner (leverage_learner.hpp)
  // Leverage Learner on (only acts while learning). Off: the mixes stay at their
  // priors while the calibrator, the forecast's fits and the cascade still learn
  // (isolates the calibrator's effect on a forecast).
  bool learn_mix = true;
  CascadeConfig cascade;               // chain tracker, Cascade Learner and walk (cascade.hpp)
};

struct VenueStats {
  std::uint64_t prices = 0, oi_updates = 0, liquidations = 0;
  double observed_usd[2] = {0.0, 0.0};
  std::uint64_t observed_n[2] = {0, 0};
  std::uint64_t unexplained[2] = {0, 0};
  double oi_base = 0.0;          // last accepted OI reading, base units (0 = none yet)
  double last_price = 0.0;       // 0 = none yet
  double min_price = 0.0, max_price = 0.0;  // range seen so far
  std::int64_t last_ts = 0;
  bool own_price = false;        // has the venue had a price update of its own?
};

struct VenueState {
  VenueConfig config;
  SideBook book[2];              // [long, short]
  VenueStats stats;
};

class Engine {
 public:
  explicit Engine(EngineConfig config);

  const EngineConfig& config() const noexcept { return cfg_; }
  const PriceGrid& grid() const noexcept { return grid_; }
  std::size_t venue_count() const noexcept { return venues_.size(); }
  std::size_t tier_count() const noexcept { return cfg_.tiers.size(); }
  const VenueState& venue(std::size_t slot) const { return venues_.at(slot); }
  int slot_of(std::uint16_t registry_id) const noexcept {
    return registry_id < slot_by_id_.size() ? slot_by_id_[registry_id] : -1;
  }

  // Single updates by engine slot. Each validates first and changes nothing on rejection.
  Reject update_price(std::size_t slot, std::int64_t ts, double price);
  Reject update_open_interest(std::size_t slot, std::int64_t ts, double oi_usd, double price);
  Reject on_liquidation(std::size_t slot, std::int64_t ts, Side side, double price,
                        double notional_usd, PriceKind price_kind = PriceKind::unknown,
                        std::uint8_t flags = 0);

  // A time-ordered batch. Pure C++: safe to run without the GIL.
  IngestCounts ingest(const Event* events, std::size_t count);
  Reject apply(const Event& ev);

  // Mixture weights (the Leverage Learner writes them; users may set them).
  void set_mix(std::size_t slot, Side side, const std::vector<double>& w);
  void set_learning(std::size_t slot, bool enabled);
  bool learning(std::size_t slot) const { return learn_.at(slot) != 0; }
  void set_learning_mix(bool on) noexcept { cfg_.learn_mix = on; }
  bool learning_mix() const noexcept { return cfg_.learn_mix; }
  const LeverageLearner& learner(std::size_t slot, Side side) const {
    return learners_.at(slot * 2 + static_cast<std::size_t>(side_index(side)));
  }

  // Map of one venue into `long_out`/`short_out` (size grid().n), or the sum over
  // venues when slot < 0.
  void heatmap(int slot, double* long_out, double* short_out) const;
  // The open book the horizon forecast reads (forecast_map, undiscounted), laid out
  // like heatmap(): where the Leverage Learner has fitted the venue side, the book
  // its model generates; elsewhere the map itself.
  void open_book(int slot, double* long_out, double* short_out) const;

  // [calibrator] begin
  const Calibrator& calibrator() const noexcept { return calib_; }
  Calibrator& calibrator() noexcept { return calib_; }
  void set_calibrating(bool on) noexcept { calibrating_ = on; }
  bool calibrating() const noexcept { return calibrating_; }
  // Re-place a side's levels with the calibrator's current rate scale
  // (O(tiers x bins): called on the calibrator's cadence, not per event).
  void apply_calibration(std::size_t slot, Side side);
  // The Leverage Learner's kernel window, in bin units, for a report of `kind` at
  // `reported`: centred on the trigger the report stands for (the calibrator's
  // offset; the documented one while it has no evidence) and half-width
  // max(min_half_bins, frac * x) + 2 * level_sigma * x, the calibrator's uncertainty
  // on where levels sit widening it.
  void calibrated_window(std::size_t slot, Side side, PriceKind kind, double reported, double min_half_bins,
                         double frac, double& x_lo, double& x_hi) const;
  // [calibrator] end
  // [forecast] begin: the horizon forecast (forecast.hpp) on absolute bins
  // k_lo .. k_lo+n-1 of one venue (slot >= 0) or summed over venues; reach_out gets
  // the probability that price reaches each bin within the horizon.
  const Forecaster& forecaster() const noexcept { return fc_; }
  // Replace the forecast settings; only before the first accepted event.
  void configure_forecast(const ForecastConfig& c);
  void forecast(int slot, double horizon_s, std::int64_t k_lo, std::int64_t n, double* long_out,
                double* short_out, double* reach_out) const;
  // [forecast] end

  const std::array<std::uint64_t, kRejectReasons>& rejected() const noexcept { return rejected_; }
  std::int64_t last_ts() const noexcept { return last_ts_; }

  // ---- cascade (cascade.hpp) ----
  // Forecast of up to `levels` (<= kMaxCascadeLevels) levels on `side` from the
  // reference price, written to `out`; returns the count (0 with no exposure).
  int cascade(Side side, int levels, CascadeLevel* out) const;
  // The side's significant clusters beyond `origin` on the summed map.
  int cascade_clusters(Side side, double origin, Cluster* out, int max_out) const;
  const CascadeModel& cascade_model() const noexcept { return cascade_; }
  // Replace the cascade configuration; resets the cascade state.
  void configure_cascade(const CascadeConfig& c);
  // ---- end cascade ----
  double reference_price() const noexcept { return ref_price_; }

  // ---- persist (serialize.hpp; defined in serialize.cpp) ----
  // Every part of the state as tagged, versioned sections. Exact: an engine
  // rebuilt by load_state continues bit-identically to this one.
  void save_state(serial::Writer& w) const;
  // Rebuild an engine from save_state's sections; throws serial::SnapshotError.
  // config_only: a fresh engine with the snapshot's configuration (no state).
  static Engine load_state(serial::Reader& r, bool config_only = false);
  // Size of the duplicate filter (fingerprints of recently accepted events).
  static constexpr std::size_t kRecentEvents = 4096;
  // No open interest or liquidation is this large (USD); larger values are
  // refused as absurd_size before they can overflow a map total.
  static constexpr double kMaxUsd = 1e15;

 private:
  // ---- persist: learner state sections (serialize.cpp lists them) ----
  void save_learner_sections(serial::Writer& w) const;
  // config_only: apply the section's configuration, not its learned state.
  bool load_learner_section(const serial::SectionHeader& h, serial::Reader& body, bool config_only);
  // ---- persist: duplicate filter ----
  static std::uint64_t fingerprint(std::int64_t ts, std::size_t slot, EventKind kind, int side,
                                   double price, double value) noexcept;
  bool is_duplicate(std::uint64_t fp) const noexcept { return recent_[fp & (kRecentEvents - 1)] == fp; }
  void remember(std::uint64_t fp) noexcept { recent_[fp & (kRecentEvents - 1)] = fp; }

  Reject check_time(std::int64_t ts) const;
  Reject check_price(const VenueState& v, double price) const;
  Reject count(Reject r) noexcept;
  Reject apply_price(VenueState& v, double price);
  // Make the grid cover every level of an entry range on a venue's books.
  bool cover_entries(const VenueState& v, double entry_lo, double entry_hi);
  bool cover(std::int64_t k_lo, std::int64_t k_hi);
  void seed_book(VenueState& v, double price, double oi_base);
  void reconcile(VenueState& v, double price, double oi_base);
  void touch_time(std::int64_t ts) noexcept { if (ts > last_ts_) last_ts_ = ts; }
  std::int64_t bin_of(double price) const noexcept;

  // Learner hook: called with the map as it stood before the event.
  void learn_from_liquidation(std::size_t slot, Side side, double price, double notional_usd,
                              PriceKind price_kind, std::uint8_t flags, std::int64_t ts);

  // [forecast] begin
  void forecast_on_liquidation(std::size_t slot, Side side, std::int64_t ts, double price, double notional_usd);
  void forecast_refresh(std::int64_t ts);
  // The map the forecast reads for a venue side: the book's map, or where the
  // Leverage Learner has fitted the venue, the open book its model generates
  // (written into fmap_scratch_, valid until the next call), each tier scaled
  // by survive_scratch_ when `survive` is set (see forecast()).
  const double* forecast_map(std::size_t slot, int si, bool survive = false) const;
  // survive_scratch_[t][k - survive_k0_]: the share of tier t's exposure at bin k
  // that is still open when price first gets there within `horizon_s`.
  void fill_survival(double horizon_s, std::int64_t k_lo, std::int64_t n) const;
  // [forecast] end

  EngineConfig cfg_;
  PriceGrid grid_;
  std::vector<VenueState> venues_;
  std::vector<int> slot_by_id_;
  std::vector<std::uint8_t> learn_;
  std::array<std::uint64_t, kRejectReasons> rejected_{};
  std::vector<double> scratch_;   // per-tier workspace, sized once
  Calibrator calib_;              // [calibrator]
  bool calibrating_ = true;       // [calibrator]
  // --- Leverage Learner (learner branch) ---
  std::vector<LeverageLearner> learners_;  // [slot * 2 + side_index]
  std::vector<double> scratch_openings_;   // per-tier workspace, sized once
  std::vector<double> scratch_scale_;      // per-tier workspace, sized once
  void learner_on_cross(VenueState& v, double p0, double p1);
  void learner_on_open_interest(std::size_t slot, std::int64_t ts, double price, double oi_usd);
  std::int64_t last_ts_ = std::numeric_limits<std::int64_t>::min();
  double ref_price_ = 0.0;
  // persist: direct-mapped table of recent event fingerprints (0 = empty slot);
  // sized once at construction, so the check allocates nothing per event.
  std::vector<std::uint64_t> recent_;
  Forecaster fc_;  // [forecast]
  mutable std::vector<double> fmap_scratch_;  // [forecast] grows with the grid
  mutable std::vector<double> survive_scratch_;  // [forecast] tiers x survive_n_, grows with the window
  mutable std::int64_t survive_k0_ = 0, survive_n_ = 0;
  mutable std::vector<double> survive_decay_;    // [forecast] tiers x steps, sized once per tier count
  // [forecast] what the table was computed for (NaN: nothing; NaN never compares equal)
  mutable std::array<double, 6> survive_key_{std::numeric_limits<double>::quiet_NaN()};
  // ---- cascade ----
  void cascade_on_price(std::size_t slot, std::int64_t ts, double price);
  void cascade_on_liquidation(Side side, double price, double notional, std::int64_t ts, bool learn);
  CascadeModel cascade_;
  mutable std::vector<double> cascade_scratch_;   // summed side map + smoothing, grows with the grid
  // ---- end cascade ----
};

}  // namespace heatcore
