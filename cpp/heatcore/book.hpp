// The exposure book of one venue and side.
//
// Exposure is stored in *entry-price space*: D[tier][entry bin] is the base
// quantity (coins) opened at that entry price, counted once per tier as if all
// of it were held at that tier's leverage (DESIGN.md: "exposure D ... unweighted
// by the mix"). A tier's liquidation level for entry bin e sits at e * ratio[t]
// (in bin units), so the mechanics (and the calibrator's correction of them) can
// change without moving any stored mass. The map H[bin] = sum_t w[t] * D_t mapped
// through ratio[t] is kept in USD at the liquidation price, split linearly
// between the two bins around each level so that it is smooth and conserves mass.
//
// Storage (performance): D lives on the book's own *entry window* (the entry
// bins that prices have visited, grown on demand), not on the whole level grid:
// entries only ever sit near prices seen, while the level grid must span every
// tier's levels (about 0.5x..2x price), so this keeps D ~20x smaller. Beside H the
// book keeps each tier's unweighted map M_t (USD at the level) on that tier's
// level window, so that a proportional closing (scale_tier) and a mix change
// update H with dense O(window) arithmetic instead of re-depositing every entry:
// H == sum_t w[t] * M_t up to rounding.
//
// Invariants (checked by tests):
//  * tot[t] == sum_e D[t][e] (base units) for every tier;
//  * after an open-interest reconciliation, tot[t] == OI (base) for every tier;
//  * every live long level lies below the last applied price, every live short
//    level above it (crossing consumes them).
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "heatcore/types.hpp"

namespace heatcore {

namespace serial {
class Writer;
class Reader;
}  // namespace serial

struct PriceGrid {
  double step = 50.0;
  std::int64_t k0 = 0;   // absolute index of the first bin; bin k has centre k * step
  std::int64_t n = 0;    // number of bins
  bool contains(std::int64_t k) const noexcept { return k >= k0 && k < k0 + n; }
};

class SideBook {
 public:
  SideBook() = default;
  SideBook(Side side, std::vector<double> ratios, std::vector<double> weights);

  // Range sentinels of an empty row (lo > hi; min/max with any bin gives that bin).
  static constexpr std::int64_t kEmptyLo = std::numeric_limits<std::int64_t>::max() / 4;
  static constexpr std::int64_t kEmptyHi = std::numeric_limits<std::int64_t>::min() / 4;

  Side side() const noexcept { return side_; }
  std::size_t tiers() const noexcept { return ratio_.size(); }

  // Re-lay every array on a grid that covers the old one.
  void regrid(const PriceGrid& old_grid, const PriceGrid& new_grid);

  // Add `qty` (base) opened at entry bin `e` to tier `t`.
  void add(const PriceGrid& g, std::size_t t, std::int64_t e, double qty);
  // Add `qty` to every tier at entry bin `e` (an opening of unknown leverage).
  void add_all_tiers(const PriceGrid& g, std::int64_t e, double qty);
  // Scale tier t by `factor` in [0, 1] (proportional closing); H and M_t follow.
  void scale_tier(const PriceGrid& g, std::size_t t, double factor);

  // Consume every level crossed by a move to price `p` (in price units).
  // Returns the expected liquidated USD (mix-weighted) for this move.
  double consume(const PriceGrid& g, double price);

  // Recompute H from D (after scaling, a mix change or a ratio change).
  void rebuild_map(const PriceGrid& g);

  void set_weights(const PriceGrid& g, const std::vector<double>& w);
  void set_ratios(const PriceGrid& g, const std::vector<double>& ratios);

  // Per-tier exposure (base units) whose liquidation level lies within
  // [x_lo, x_hi] in bin units; written into `out` (size tiers()). O(tiers * width).
  void tier_exposure_near(const PriceGrid& g, double x_lo, double x_hi, double* out) const;

  const std::vector<double>& map() const noexcept { return map_; }
  const std::vector<double>& weights() const noexcept { return w_; }
  const std::vector<double>& ratios() const noexcept { return ratio_; }
  const std::vector<double>& tier_totals() const noexcept { return tot_; }
  const std::vector<double>& tier_consumed() const noexcept { return consumed_; }

  // --- Leverage Learner support (learner branch) -----------------------------
  // The openings book O[tier][entry bin]: unit-rate openings (the learner adds a
  // fixed USD per hour at the current price to every tier), removed by crossing
  // under each tier's ratio exactly like D and aged by a closing hazard. Unlike
  // D it is not reconciled to OI, so it says where a tier's *recent openings*
  // sit; the learner fits the openings mix and the opening rate to it.
  // Rows 0..T-1 hold isolated positions (level = entry * ratio[t]); rows
  // T..2T-1 cross-margined ones, which die `cross_distance` times farther from
  // entry (a documented per-venue prior, see venues.json). These 2T rows hold
  // every vintage, including the book that predates the first OI reading
  // (seed_openings). Rows 2T..4T-1 repeat them for the openings made since,
  // each weighted by its recency (age_openings' recent_factor): the vintage
  // the learner's evidence is about.
  void set_cross_distance(double distance);
  void add_openings(const PriceGrid& g, std::int64_t e, double qty);
  // The book older than the first reading, all-vintage rows only: qty[t] (base)
  // of tier t spread uniformly over the entries in [e_lo, e_hi] whose levels no
  // price in [seen_lo, seen_hi] has crossed (at e_now when none survives).
  void seed_openings(const PriceGrid& g, std::int64_t e_lo, std::int64_t e_hi, std::int64_t e_now, double seen_lo,
                     double seen_hi, const double* qty);
  // Ages tier t (every row) by factor[t] (closings at a tier's own hazard); the
  // recency-weighted rows also by recent_factor.
  void age_openings(const PriceGrid& g, const double* factor, double recent_factor = 1.0);
  // Per row (4T), the openings book's quantity with levels in [x_lo, x_hi] * scale[t]
  // (bin units; `scale` maps a reported price to the tier's trigger level).
  void openings_near(const PriceGrid& g, double x_lo, double x_hi, const double* scale, double* out) const;
  const std::vector<double>& openings_totals() const noexcept { return otot_; }
  const std::vector<double>& openings_consumed_usd() const noexcept { return oconsumed_usd_; }
  double map_sum() const noexcept { return map_sum_; }   // sum of map(), USD
  // The open book the learner's model generates (USD at the level, on grid g,
  // `out` size g.n): tier t's openings O_t (all-vintage rows, which hold the
  // seeded older book too) at opening rate u[t], rows mixed by `cross` (the
  // cross-margined share), plus pre[t] hours of unit openings placed like the
  // tier's exposure M_t (the older book of a learner restored from LLRN 1.0,
  // zero otherwise). Sums to about sum_t u_t N_t, the open interest the learner
  // fits. O(tiers * window).
  // `survive` (optional, tiers rows of `survive_n` bins from bin `survive_k0`)
  // scales tier t's mass at a bin; bins outside that range are not scaled.
  void generative_map(const PriceGrid& g, const double* u, const double* pre, double cross, double* out,
                      const double* survive = nullptr, std::int64_t survive_k0 = 0,
                      std::int64_t survive_n = 0) const;
  // The openings book's exact state (persist, section LLRN; defined in serialize.cpp).
  void save_openings(serial::Writer& w, const PriceGrid& g) const;
  void load_openings(serial::Reader& r, const PriceGrid& g);
  // The recency-weighted rows (LLRN minor 1, after every book's save_openings).
  // Without them (older snapshots) they equal the all-vintage rows.
  void save_recent_openings(serial::Writer& w) const;
  void load_recent_openings(serial::Reader& r);
  double cross_distance() const noexcept { return cross_distance_; }
  double exposure_total() const noexcept;   // sum_t w[t] tot[t], base units
  double expected_usd() const noexcept { return expected_usd_; }
  double tier_mass(const PriceGrid& /*g*/, std::size_t t, std::int64_t e) const noexcept {
    return e >= ek0_ && e < ek0_ + en_ ? d_[t * static_cast<std::size_t>(en_) + static_cast<std::size_t>(e - ek0_)]
                                       : 0.0;
  }
  // The entry window [entry_first(), entry_first() + entry_bins()) that D covers.
  std::int64_t entry_first() const noexcept { return ek0_; }
  std::int64_t entry_bins() const noexcept { return en_; }
  // Bytes held by the book's arrays (for memory accounting).
  std::size_t memory_bytes() const noexcept;
  // Lowest / highest bin a tier's levels can occupy (for grid coverage).
  double min_ratio() const noexcept { return rmin_; }
  double max_ratio() const noexcept { return rmax_; }
  bool empty_tier(std::size_t t) const noexcept { return lo_[t] > hi_[t]; }
  std::int64_t lo(std::size_t t) const noexcept { return lo_[t]; }
  std::int64_t hi(std::size_t t) const noexcept { return hi_[t]; }

  // ---- persist (defined in serialize.cpp) ----
  // Exact state of the book on grid `g` (the side is written by the caller).
  void save(serial::Writer& w, const PriceGrid& g) const;
  // Fill a freshly constructed book (all tiers empty, same side and tier count)
  // from save()'s bytes; throws serial::SnapshotError and leaves *this unchanged.
  void load(serial::Reader& r, const PriceGrid& g);

 private:
  void deposit(const PriceGrid& g, std::size_t t, std::int64_t e, double qty, double sign);
  // Make the entry window cover entry bin e (amortised: grows with headroom).
  void cover_entry(std::int64_t e);
  // Make the openings window cover entry bin e (amortised, like cover_entry).
  void cover_openings(std::int64_t e);
  double* orow(std::size_t t) noexcept { return o_.data() + t * static_cast<std::size_t>(on_); }
  const double* orow(std::size_t t) const noexcept { return o_.data() + t * static_cast<std::size_t>(on_); }
  // Lay out the per-tier map windows for the entry window and the ratios; keeps
  // the values of M where old and new windows overlap when `keep` is set.
  void layout_tier_maps(bool keep);
  // Recompute every M_t from D, then H = sum_t w[t] M_t.
  void rebuild_tier_maps(const PriceGrid& g);
  void map_from_tier_maps(const PriceGrid& g);
  // Tier t's row of D; entry bin e sits at row(t)[e - ek0_].
  double* row(std::size_t t) noexcept { return d_.data() + t * static_cast<std::size_t>(en_); }
  const double* row(std::size_t t) const noexcept { return d_.data() + t * static_cast<std::size_t>(en_); }

  Side side_ = Side::long_;
  std::vector<double> ratio_;      // LP / EP per tier
  std::vector<double> w_;          // mixture weights, sum to 1
  std::vector<double> d_;          // tiers x en_, base units by entry bin (entry window)
  std::int64_t ek0_ = 0, en_ = 0;  // entry window: absolute entry bins [ek0_, ek0_ + en_)
  std::vector<double> tmap_;       // per tier M_t, USD at the level, unweighted (tier windows)
  std::vector<std::int64_t> mk0_;  // per tier, absolute level bin of M_t's first element
  std::vector<std::size_t> moff_, mlen_;  // per tier, offset into tmap_ and window length
  std::vector<double> tot_;        // per tier, base units
  std::vector<double> consumed_;   // per tier, cumulative base units crossed
  std::vector<std::int64_t> lo_, hi_;  // per tier, absolute entry bins that may hold mass
  std::vector<double> map_;        // n, USD at the liquidation level, mix-weighted
  double expected_usd_ = 0.0;
  std::vector<double> o_;              // 4 tiers x on_, openings book (base units per unit rate)
  std::int64_t ok0_ = 0, on_ = 0;      // openings window: absolute entry bins [ok0_, ok0_ + on_)
  std::vector<double> oratio_;         // 4 tiers: isolated, cross-margined level / entry; again (recent)
  double cross_distance_ = 1.0;
  std::vector<double> otot_;           // per tier
  std::vector<double> oconsumed_usd_;  // per tier, cumulative USD crossed (at the level)
  std::vector<std::int64_t> olo_, ohi_;
  double map_sum_ = 0.0;
  double rmin_ = 1.0, rmax_ = 1.0;
};

}  // namespace heatcore
