#include "heatcore/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

namespace heatcore {

namespace {

std::vector<double> normalized(const std::vector<double>& w, std::size_t n, const char* what) {
  if (w.size() != n) throw std::invalid_argument(std::string(what) + ": expected one weight per tier");
  double s = 0.0;
  for (double x : w) {
    if (!std::isfinite(x) || x < 0.0) throw std::invalid_argument(std::string(what) + ": weights must be finite and >= 0");
    s += x;
  }
  if (!(s > 0.0)) throw std::invalid_argument(std::string(what) + ": weights must not all be zero");
  std::vector<double> out(w);
  for (double& x : out) x /= s;
  return out;
}

std::vector<double> side_ratios(const Mechanics& m, Side side, const std::vector<double>& tiers) {
  std::vector<double> r(tiers.size());
  for (std::size_t t = 0; t < tiers.size(); ++t) r[t] = m.liquidation_ratio(side, tiers[t]);
  return r;
}

}  // namespace

Engine::Engine(EngineConfig config) : cfg_(std::move(config)) {
  if (!(std::isfinite(cfg_.step) && cfg_.step > 0.0)) throw std::invalid_argument("step must be a positive number");
  if (cfg_.tiers.empty()) throw std::invalid_argument("tiers: at least one leverage tier is required");
  for (std::size_t i = 0; i < cfg_.tiers.size(); ++i) {
    const double l = cfg_.tiers[i];
    if (!(std::isfinite(l) && l >= 1.0 && l <= 1000.0)) throw std::invalid_argument("tiers: leverage must be in [1, 1000]");
    if (i > 0 && !(l > cfg_.tiers[i - 1])) throw std::invalid_argument("tiers: must be strictly ascending");
  }
  if (cfg_.venues.empty()) throw std::invalid_argument("venues: at least one venue is required");
  if (!(cfg_.seed_spread >= 0.0 && cfg_.seed_spread < 0.9)) throw std::invalid_argument("seed_spread must be in [0, 0.9)");
  if (!(cfg_.max_price_ratio > 1.0)) throw std::invalid_argument("max_price_ratio must be > 1");
  if (cfg_.ts_tolerance_ms < 0) throw std::invalid_argument("ts_tolerance_ms must be >= 0");
  grid_.step = cfg_.step;
  const std::size_t tiers = cfg_.tiers.size();
  venues_.reserve(cfg_.venues.size());
  for (auto& vc : cfg_.venues) {
    vc.mechanics.validate();
    vc.prior_long = normalized(vc.prior_long, tiers, "prior_long");
    vc.prior_short = normalized(vc.prior_short, tiers, "prior_short");
    if (vc.registry_id >= slot_by_id_.size()) slot_by_id_.resize(vc.registry_id + 1u, -1);
    if (slot_by_id_[vc.registry_id] != -1) throw std::invalid_argument("venues: duplicate venue " + vc.name);
    slot_by_id_[vc.registry_id] = static_cast<int>(venues_.size());
    VenueState v;
    v.config = vc;
    v.book[0] = SideBook(Side::long_, side_ratios(vc.mechanics, Side::long_, cfg_.tiers), vc.prior_long);
    v.book[1] = SideBook(Side::short_, side_ratios(vc.mechanics, Side::short_, cfg_.tiers), vc.prior_short);
    venues_.push_back(std::move(v));
  }
  learn_.assign(venues_.size(), cfg_.learn ? 1 : 0);
  scratch_.assign(tiers, 0.0);
  // [calibrator] begin
  {
    std::vector<Mechanics> mech;
    for (const auto& v : venues_) mech.push_back(v.config.mechanics);
    calib_ = Calibrator(cfg_.calibrator, mech, std::vector<PriceKind>(venues_.size(), PriceKind::unknown));
    calibrating_ = cfg_.calibrate;
  }
  // [calibrator] end
  recent_.assign(kRecentEvents, 0);  // persist: duplicate filter
  fc_ = Forecaster(cfg_.forecast, venues_.size());  // [forecast]
  cfg_.learner.validate();
  learners_.reserve(venues_.size() * 2);
  for (auto& v : venues_) {
    if (!(std::isfinite(v.config.cross_share) && v.config.cross_share >= 0.0 && v.config.cross_share <= 1.0))
      throw std::invalid_argument("cross_share must be in [0, 1]");
    if (!(std::isfinite(v.config.cross_distance) && v.config.cross_distance >= 1.0))
      throw std::invalid_argument("cross_distance must be >= 1");
    for (auto& b : v.book) b.set_cross_distance(v.config.cross_distance);
    learners_.emplace_back(cfg_.learner, v.config.prior_long, cfg_.tiers, v.config.cross_share);
    learners_.emplace_back(cfg_.learner, v.config.prior_short, cfg_.tiers, v.config.cross_share);
  }
  scratch_openings_.assign(4 * tiers, 0.0);
  scratch_scale_.assign(tiers, 1.0);
  cascade_ = CascadeModel(cfg_.cascade, venues_.size());  // cascade
}

// ---- persist: duplicate filter --------------------------------------------------
// A 64-bit fingerprint of everything that makes an event what it is. Replayed
// or doubly delivered events (reconnects, overlapping REST and websocket feeds)
// repeat all of it; two distinct events practically never do.
std::uint64_t Engine::fingerprint(std::int64_t ts, std::size_t slot, EventKind kind, int side, double price,
                                  double value) noexcept {
  auto mix = [](std::uint64_t h, std::uint64_t x) noexcept {
    h ^= x + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 29);
  };
  std::uint64_t pb, vb;
  std::memcpy(&pb, &price, sizeof pb);
  std::memcpy(&vb, &value, sizeof vb);
  std::uint64_t h = mix(0x6A09E667F3BCC908ull, static_cast<std::uint64_t>(ts));
  h = mix(h, (static_cast<std::uint64_t>(slot) << 16) | (static_cast<std::uint64_t>(kind) << 8) |
                 static_cast<std::uint8_t>(static_cast<std::int8_t>(side)));
  h = mix(h, pb);
  h = mix(h, vb);
  return h == 0 ? 1 : h;  // 0 marks an empty slot
}

std::int64_t Engine::bin_of(double price) const noexcept {
  return static_cast<std::int64_t>(std::llround(price / grid_.step));
}

Reject Engine::count(Reject r) noexcept {
  if (r != Reject::ok) ++rejected_[static_cast<std::size_t>(r)];
  return r;
}

Reject Engine::check_time(std::int64_t ts) const {
  if (last_ts_ != std::numeric_limits<std::int64_t>::min() && ts < last_ts_ - cfg_.ts_tolerance_ms)
    return Reject::out_of_order;
  return Reject::ok;
}

Reject Engine::check_price(const VenueState& v, double price) const {
  if (!std::isfinite(price)) return Reject::non_finite;
  if (!(price > 0.0)) return Reject::non_positive_price;
  // Bins are indexed by int64; a price that cannot be binned is not a price.
  if (price / grid_.step > 1e15) return Reject::absurd_price;
  // persist: nor is one a billion times finer than a bin (1 / price would overflow OI in base units).
  if (price / grid_.step < 1e-9) return Reject::absurd_price;
  const double last = v.stats.last_price > 0.0 ? v.stats.last_price : ref_price_;
  if (last > 0.0 && (price > last * cfg_.max_price_ratio || price < last / cfg_.max_price_ratio))
    return Reject::absurd_price;
  return Reject::ok;
}

bool Engine::cover(std::int64_t k_lo, std::int64_t k_hi) {
  k_lo = std::max<std::int64_t>(k_lo, 0);
  if (k_hi < k_lo) return true;
  if (grid_.n > 0 && k_lo >= grid_.k0 && k_hi < grid_.k0 + grid_.n) return true;
  PriceGrid next = grid_;
  if (grid_.n == 0) {
    const std::int64_t pad = std::max<std::int64_t>(16, (k_hi - k_lo) / 4);
    next.k0 = std::max<std::int64_t>(0, k_lo - pad);
    next.n = k_hi + pad - next.k0 + 1;
  } else {
    // Grow with headroom so that a drifting price costs amortised O(1) re-layouts.
    const std::int64_t pad = std::max<std::int64_t>(16, grid_.n / 2);
    const std::int64_t lo = k_lo < grid_.k0 ? std::max<std::int64_t>(0, k_lo - pad) : grid_.k0;
    const std::int64_t old_hi = grid_.k0 + grid_.n - 1;
    const std::int64_t hi = k_hi > old_hi ? k_hi + pad : old_hi;
    next.k0 = lo;
    next.n = hi - lo + 1;
  }
  if (next.n > cfg_.max_bins) return false;
  for (auto& v : venues_)
    for (auto& b : v.book) b.regrid(grid_, next);
  grid_ = next;
  return true;
}

bool Engine::cover_entries(const VenueState& v, double entry_lo, double entry_hi) {
  const double rmin = std::min(v.book[0].min_ratio(), v.book[1].min_ratio());
  const double rmax = std::max(v.book[0].max_ratio(), v.book[1].max_ratio());
  const auto e_lo = static_cast<double>(bin_of(entry_lo));
  const auto e_hi = static_cast<double>(bin_of(entry_hi));
  return cover(static_cast<std::int64_t>(std::floor(e_lo * std::min(rmin, 1.0))) - 2,
               static_cast<std::int64_t>(std::ceil(e_hi * std::max(rmax, 1.0))) + 2);
}

Reject Engine::apply_price(VenueState& v, double price) {
  const double p0 = v.stats.last_price;
  for (auto& b : v.book) b.consume(grid_, price);
  learner_on_cross(v, p0, price);
  auto& s = v.stats;
  s.last_price = price;
  s.min_price = s.min_price > 0.0 ? std::min(s.min_price, price) : price;
  s.max_price = std::max(s.max_price, price);
  return Reject::ok;
}

Reject Engine::update_price(std::size_t slot, std::int64_t ts, double price) {
  VenueState& v = venues_.at(slot);
  if (Reject r = check_time(ts); r != Reject::ok) return count(r);
  if (Reject r = check_price(v, price); r != Reject::ok) return count(r);
  const std::uint64_t fp = fingerprint(ts, slot, EventKind::price, 0, price, 0.0);  // persist
  if (is_duplicate(fp)) return count(Reject::duplicate);
  remember(fp);
  touch_time(ts);
  calib_.on_mark(slot, ts, price);  // [calibrator]
  v.stats.own_price = true;
  ++v.stats.prices;
  v.stats.last_ts = ts;
  apply_price(v, price);
  ref_price_ = price;
  // Venues without a price feed of their own follow the latest price seen anywhere.
  for (auto& other : venues_)
    if (!other.stats.own_price) apply_price(other, price);
  fc_.on_price(ts, price);   // [forecast]
  forecast_refresh(ts);      // [forecast]
  cascade_on_price(slot, ts, price);  // cascade
  return Reject::ok;
}

void Engine::seed_book(VenueState& v, double price, double oi_base) {
  const auto& s = v.stats;
  const double seen_lo = s.min_price > 0.0 ? s.min_price : price;
  const double seen_hi = s.max_price > 0.0 ? s.max_price : price;
  const double lo = std::min(seen_lo, price * (1.0 - cfg_.seed_spread));
  const double hi = std::max(seen_hi, price * (1.0 + cfg_.seed_spread));
  const std::int64_t e_lo = bin_of(lo), e_hi = bin_of(hi), e_now = bin_of(price);
  for (auto& book : v.book) {
    const bool is_long = book.side() == Side::long_;
    for (std::size_t t = 0; t < book.tiers(); ++t) {
      // Only positions that would have survived every price seen since they opened.
      const double r = book.ratios()[t];
      std::int64_t first = e_lo, last = e_hi;
      if (is_long) {
        const double limit = seen_lo / (r * grid_.step);  // e * r * step < seen_lo
        last = std::min(last, static_cast<std::int64_t>(std::ceil(limit)) - 1);
      } else {
        const double limit = seen_hi / (r * grid_.step);  // e * r * step > seen_hi
        first = std::max(first, static_cast<std::int64_t>(std::floor(limit)) + 1);
      }
      if (last < first) {
        first = last = e_now;  // nothing survives the spread: open it all at the current price
      }
      const double q = oi_base / static_cast<double>(last - first + 1);
      for (std::int64_t e = first; e <= last; ++e) book.add(grid_, t, e, q);
    }
  }
}

void Engine::reconcile(VenueState& v, double price, double oi_base) {
  const std::int64_t e_now = bin_of(price);
  for (auto& book : v.book) {
    for (std::size_t t = 0; t < book.tiers(); ++t) {
      const double tot = book.tier_totals()[t];
      if (tot < oi_base) {
        book.add(grid_, t, e_now, oi_base - tot);   // openings at the current price
      } else if (tot > oi_base) {
        book.scale_tier(grid_, t, oi_base / tot);    // closings, proportional
      }
    }
    // Both branches keep H in step (add deposits, scale_tier subtracts w*(1-f)*M_t):
    // a reading costs O(tiers x occupied window), not a rebuild of the map.
  }
}

Reject Engine::update_open_interest(std::size_t slot, std::int64_t ts, double oi_usd, double price) {
  VenueState& v = venues_.at(slot);
  if (Reject r = check_time(ts); r != Reject::ok) return count(r);
  if (!std::isfinite(oi_usd) || !std::isfinite(price)) return count(Reject::non_finite);
  // A zero or missing reading is a gap in the feed, never "everything closed".
  if (!(oi_usd > 0.0)) return count(Reject::non_positive_size);
  if (oi_usd > kMaxUsd) return count(Reject::absurd_size);  // persist
  if (price < 0.0) return count(Reject::non_positive_price);
  if (price == 0.0) price = v.stats.last_price > 0.0 ? v.stats.last_price : ref_price_;
  if (!(price > 0.0)) return count(Reject::no_price);
  if (Reject r = check_price(v, price); r != Reject::ok) return count(r);
  const double oi_base = oi_usd / price;
  if (!std::isfinite(oi_base)) return count(Reject::absurd_size);  // persist
  const std::uint64_t fp = fingerprint(ts, slot, EventKind::open_interest, 0, price, oi_usd);  // persist
  if (is_duplicate(fp)) return count(Reject::duplicate);
  // Coverage of every entry the update may write, decided before any state changes.
  const auto& s = v.stats;
  const bool first = s.oi_base == 0.0;
  double lo = price, hi = price;
  if (first) {
    lo = std::min(s.min_price > 0.0 ? s.min_price : price, price * (1.0 - cfg_.seed_spread));
    hi = std::max(s.max_price > 0.0 ? s.max_price : price, price * (1.0 + cfg_.seed_spread));
  }
  if (!cover_entries(v, lo, hi)) return count(Reject::grid_limit);
  remember(fp);
  touch_time(ts);
  if (first) seed_book(v, price, oi_base);
  else reconcile(v, price, oi_base);
  learner_on_open_interest(slot, ts, price, oi_usd);
  v.stats.oi_base = oi_base;
  ++v.stats.oi_updates;
  v.stats.last_ts = ts;
  return Reject::ok;
}

Reject Engine::on_liquidation(std::size_t slot, std::int64_t ts, Side side, double price,
                              double notional_usd, PriceKind price_kind, std::uint8_t flags) {
  VenueState& v = venues_.at(slot);
  if (Reject r = check_time(ts); r != Reject::ok) return count(r);
  if (side != Side::long_ && side != Side::short_) return count(Reject::unknown_side);
  if (Reject r = check_price(v, price); r != Reject::ok) return count(r);
  if (!std::isfinite(notional_usd)) return count(Reject::non_finite);
  if (!(notional_usd > 0.0)) return count(Reject::non_positive_size);
  // persist: one liquidation cannot exceed the venue's whole open interest.
  if (notional_usd > kMaxUsd || (v.stats.oi_base > 0.0 && notional_usd > v.stats.oi_base * price))
    return count(Reject::absurd_size);
  const std::uint64_t fp = fingerprint(ts, slot, EventKind::liquidation, static_cast<int>(side), price,
                                       notional_usd);
  if (is_duplicate(fp)) return count(Reject::duplicate);
  remember(fp);
  touch_time(ts);
  // Learners see the map as it stood before the event.
  forecast_on_liquidation(slot, side, ts, price, notional_usd);  // [forecast]
  learn_from_liquidation(slot, side, price, notional_usd, price_kind, flags, ts);
  const int si = side_index(side);
  v.stats.observed_usd[si] += notional_usd;
  ++v.stats.observed_n[si];
  ++v.stats.liquidations;
  v.stats.last_ts = ts;
  return Reject::ok;
}

// ---- Leverage Learner hooks (learner branch) ----------------------------------

void Engine::learner_on_cross(VenueState& v, double p0, double p1) {
  const auto slot = static_cast<std::size_t>(&v - venues_.data());
  if (!learn_[slot] || !cfg_.learn_mix) return;
  const double lo = p0 > 0.0 ? std::min(p0, p1) : p1, hi = p0 > 0.0 ? std::max(p0, p1) : p1;
  for (int si = 0; si < 2; ++si) {
    const SideBook& b = v.book[si];
    learners_[slot * 2 + static_cast<std::size_t>(si)].on_cross(
        last_ts_, lo, hi, b.openings_consumed_usd().data(), b.tier_consumed().data(), b.tier_totals().data());
  }
}

void Engine::learner_on_open_interest(std::size_t slot, std::int64_t ts, double price, double oi_usd) {
  // The learner's openings book: age it by the closing hazard, then add the
  // unit-rate openings since the last reading at this reading's price. At the
  // first reading, the older book goes where seed_book put the exposure book.
  if (!learn_[slot] || !cfg_.learn_mix) return;
  VenueState& v = venues_[slot];
  for (int si = 0; si < 2; ++si) {
    SideBook& b = v.book[si];
    const auto o = learners_[slot * 2 + static_cast<std::size_t>(si)].on_open_interest(ts, price, oi_usd);
    if (o.seed != nullptr) {
      const auto& s = v.stats;
      const double seen_lo = s.min_price > 0.0 ? s.min_price : price;
      const double seen_hi = s.max_price > 0.0 ? s.max_price : price;
      const double lo = std::min(seen_lo, price * (1.0 - cfg_.seed_spread));
      const double hi = std::max(seen_hi, price * (1.0 + cfg_.seed_spread));
      b.seed_openings(grid_, bin_of(lo), bin_of(hi), bin_of(price), seen_lo, seen_hi, o.seed);
    }
    if (o.age != nullptr) b.age_openings(grid_, o.age, o.recent);
    if (o.qty > 0.0) b.add_openings(grid_, bin_of(price), o.qty);
  }
}

void Engine::learn_from_liquidation(std::size_t slot, Side side, double price, double notional_usd,
                                    PriceKind price_kind, std::uint8_t flags, std::int64_t ts) {
  VenueState& v = venues_[slot];
  const int si = side_index(side);
  SideBook& book = v.book[si];
  LeverageLearner& learner = learners_[slot * 2 + static_cast<std::size_t>(si)];
  const LearnerConfig& lc = cfg_.learner;
  // Kernel window around the event in bin units: max(kernel_bins, kernel_frac * x).
  // Bankruptcy and fill prices sit beyond the trigger by about the maintenance
  // margin; the window reaches that much further toward the trigger side.
  const double x = price / grid_.step;
  const double half = std::max(lc.kernel_bins, lc.kernel_frac * x);
  double x_lo = x - half, x_hi = x + half;
  if (price_kind == PriceKind::bankruptcy || price_kind == PriceKind::fill) {
    if (side == Side::long_) x_hi += 0.005 * x;
    else x_lo -= 0.005 * x;
  }
  book.tier_exposure_near(grid_, x_lo, x_hi, scratch_.data());
  double near = 0.0;
  for (std::size_t t = 0; t < book.tiers(); ++t) near += book.weights()[t] * scratch_[t];

  // Skill score, learned or not: log of the probability of the event's bin under
  // the side's normalized map (averaged over the kernel window), floored.
  {
    const double sum = book.map_sum();
    double p = 0.0;
    if (sum > 0.0 && grid_.n > 0) {
      const auto k_lo = std::max<std::int64_t>(static_cast<std::int64_t>(std::floor(x - half)), grid_.k0);
      const auto k_hi = std::min<std::int64_t>(static_cast<std::int64_t>(std::ceil(x + half)),
                                               grid_.k0 + grid_.n - 1);
      double m = 0.0;
      for (std::int64_t k = k_lo; k <= k_hi; ++k) m += book.map()[static_cast<std::size_t>(k - grid_.k0)];
      const double width = static_cast<double>(std::max<std::int64_t>(1, k_hi - k_lo + 1));
      p = m / width / sum;
    }
    learner.add_loglik(std::log(std::max(p, lc.loglik_floor)));
  }

  // Chains are tracked whether or not the venue learns; learn_ gates the statistics.
  cascade_on_liquidation(side, price, notional_usd, ts, learn_[slot] != 0);  // cascade

  // An event the map cannot explain (no exposure of any tier near it, live or,
  // when learning, crossed in the last crossing_window_s) is counted per venue
  // and side, and is never forced onto a tier.
  if (!learn_[slot]) {
    if (!(near > 0.0)) ++v.stats.unexplained[si];
    return;
  }
  // [calibrator] begin
  if (calibrating_ && calib_.observe(slot, side, price_kind, price, notional_usd, ts))
    apply_calibration(slot, side);
  // [calibrator] end
  if (!cfg_.learn_mix) {  // the Leverage Learner is off: the mix stays at its prior
    if (!(near > 0.0)) ++v.stats.unexplained[si];
    return;
  }
  // A venue that reports the bankruptcy price (or an order at it) reports, for
  // tier t, bankruptcy_t / level_t times the trigger: the learner's window is
  // mapped back per tier, so that it can stay narrow.
  // [calibrator] begin: once the calibrator has measured a venue's reports (at
  // least kWarm events), a report that is not at the bankruptcy price (a convention
  // that departs, a fill, a trade print that sits elsewhere) is mapped back by the
  // measured offset (the same for every tier), and the window widens (in
  // quadrature) by the calibrator's uncertainty on that offset.
  const PriceKind kind = price_kind == PriceKind::unknown ? calib_.documented_kind(slot) : price_kind;
  const Estimate off = calib_.offset(slot, side, kind);
  const bool measured = calibrating_ && off.n_eff >= RobustLocation::kWarm;
  const bool at_bankruptcy = (kind == PriceKind::bankruptcy || kind == PriceKind::order) &&
                             calib_.rate_source(slot, side) != RateSource::convention_departs;
  const double offset_scale = measured ? std::exp(-off.value) : 1.0;
  // Only the per-event uncertainty of the trigger widens the window: a systematic
  // error (an unmeasured rate) moves every event alike and blurring cannot fix it
  // (measured: widening by the prior's rate sd raised the far-side band TV 0.16 -> 0.19).
  const double widen = measured && calib_.config().widen_kernel ? off.sd * x : 0.0;
  const double l_half = std::sqrt(half * half + widen * widen);
  const auto& mech = v.config.mechanics;
  for (std::size_t t = 0; t < book.tiers(); ++t)
    scratch_scale_[t] = at_bankruptcy ? book.ratios()[t] / Mechanics::bankruptcy_ratio(side, cfg_.tiers[t], mech.inverse)
                                      : offset_scale;
  const double l_lo = x - l_half, l_hi = x + l_half;
  // [calibrator] end
  book.openings_near(grid_, l_lo, l_hi, scratch_scale_.data(), scratch_openings_.data());
  const bool sampled = (flags & kFlagSampled) != 0;
  const bool learned = learner.on_liquidation(ts, price, notional_usd, sampled, scratch_openings_.data(),
                                              scratch_scale_.data(), grid_.step, l_lo, l_hi);
  if (!learned && !(near > 0.0)) {
    ++v.stats.unexplained[si];
    learner.count_unexplained();
  }
  // Map weights change only at refreshes: set_weights is O(tiers * bins).
  if (learner.refresh_due(ts)) {
    learner.refresh(ts, book.openings_totals().data(), v.stats.last_price);
    book.set_weights(grid_, learner.openings_mix());
  }
}

// [calibrator] begin
void Engine::apply_calibration(std::size_t slot, Side side) {
  VenueState& v = venues_.at(slot);
  SideBook& book = v.book[side_index(side)];
  const double scale = calib_.placement_scale(slot, side);
  std::vector<double> r(cfg_.tiers.size());
  double rmin = 1.0, rmax = 1.0;
  for (std::size_t t = 0; t < r.size(); ++t) {
    r[t] = v.config.mechanics.liquidation_ratio(side, cfg_.tiers[t], scale);
    rmin = std::min(rmin, r[t]);
    rmax = std::max(rmax, r[t]);
  }
  // The moved levels must stay on the grid; if it cannot grow, keep the old placement.
  std::int64_t e_lo = std::numeric_limits<std::int64_t>::max(), e_hi = std::numeric_limits<std::int64_t>::min();
  for (std::size_t t = 0; t < book.tiers(); ++t) {
    if (book.empty_tier(t)) continue;
    e_lo = std::min(e_lo, book.lo(t));
    e_hi = std::max(e_hi, book.hi(t));
  }
  if (e_lo <= e_hi &&
      !cover(static_cast<std::int64_t>(std::floor(static_cast<double>(e_lo) * rmin)) - 2,
             static_cast<std::int64_t>(std::ceil(static_cast<double>(e_hi) * rmax)) + 2))
    return;
  book.set_ratios(grid_, r);
  calib_.mark_applied(slot, side, scale);
}

void Engine::calibrated_window(std::size_t slot, Side side, PriceKind kind, double reported, double min_half_bins,
                               double frac, double& x_lo, double& x_hi) const {
  const double x = calib_.trigger_of(slot, side, kind, reported) / grid_.step;
  const double half = std::max(min_half_bins, frac * x) + 2.0 * calib_.level_sigma(slot, side) * x;
  x_lo = x - half;
  x_hi = x + half;
}
// [calibrator] end

Reject Engine::apply(const Event& ev) {
  const int slot = slot_of(ev.venue);
  if (slot < 0) return count(Reject::unknown_venue);
  const auto s = static_cast<std::size_t>(slot);
  switch (static_cast<EventKind>(ev.kind)) {
    case EventKind::price:
      return update_price(s, ev.ts_ms, ev.price);
    case EventKind::open_interest:
      return update_open_interest(s, ev.ts_ms, ev.value, ev.price);
    case EventKind::liquidation: {
      Side side = ev.side == 1 ? Side::long_ : ev.side == -1 ? Side::short_ : Side::none;
      return on_liquidation(s, ev.ts_ms, side, ev.price, ev.value,
                            static_cast<PriceKind>(ev.price_kind), ev.flags);
    }
  }
  return count(Reject::unknown_kind);
}

IngestCounts Engine::ingest(const Event* events, std::size_t n) {
  IngestCounts c;
  const auto before = rejected_;
  for (std::size_t i = 0; i < n; ++i) {
    const Event& ev = events[i];
    if (apply(ev) != Reject::ok) continue;
    switch (static_cast<EventKind>(ev.kind)) {
      case EventKind::price: ++c.price; break;
      case EventKind::open_interest: ++c.open_interest; break;
      case EventKind::liquidation: ++c.liquidation; break;
    }
  }
  for (std::size_t r = 0; r < c.rejected.size(); ++r) c.rejected[r] = rejected_[r] - before[r];
  return c;
}

void Engine::set_mix(std::size_t slot, Side side, const std::vector<double>& w) {
  VenueState& v = venues_.at(slot);
  if (side != Side::long_ && side != Side::short_) throw std::invalid_argument("side must be long or short");
  const auto mix = normalized(w, tier_count(), "mix");
  v.book[side_index(side)].set_weights(grid_, mix);
  learners_[slot * 2 + static_cast<std::size_t>(side_index(side))].set_mix(mix);
}

// [forecast] begin
void Engine::forecast_on_liquidation(std::size_t slot, Side side, std::int64_t ts, double price,
                                     double notional_usd) {
  fc_.on_liquidation(slot, side, ts, price, notional_usd, grid_.step);
  // [calibrator] where the calibrator has found the venue departing from its
  // documentation (reports elsewhere, or levels re-placed), the forecast places
  // the map's reported prices with the measured offset
  if (calibrating_ && learn_[slot] && calib_.departs(slot, side)) {
    const Estimate off = calib_.offset(slot, side, calib_.documented_kind(slot));
    fc_.set_shift(slot, side_index(side), static_cast<int>(std::lround(off.value * price / grid_.step)));
  }
  forecast_refresh(ts);
}

void Engine::forecast_refresh(std::int64_t ts) {
  if (!fc_.refresh_due(ts)) return;
  fc_.refresh(ts, grid_, [this](std::size_t v, int s) { return forecast_map(v, s); });
}

const double* Engine::forecast_map(std::size_t slot, int si, bool survive) const {
  const SideBook& book = venues_[slot].book[si];
  if (!cfg_.forecast.generative_map || !cfg_.learn || !cfg_.learn_mix || !learn_[slot]) return book.map().data();
  const LeverageLearner& learner = learners_[slot * 2 + static_cast<std::size_t>(si)];
  const auto& u = learner.opening_rates();
  if (!(std::accumulate(u.begin(), u.end(), 0.0) > 0.0)) return book.map().data();
  const auto n = static_cast<std::size_t>(grid_.n);
  if (fmap_scratch_.size() < n) fmap_scratch_.resize(n);
  const bool scaled = survive && survive_n_ > 0;
  book.generative_map(grid_, u.data(), learner.older_book().data(), learner.cross_share(), fmap_scratch_.data(),
                      scaled ? survive_scratch_.data() : nullptr, survive_k0_, scaled ? survive_n_ : 0);
  return fmap_scratch_.data();
}

void Engine::fill_survival(double horizon_s, std::int64_t k_lo, std::int64_t n) const {
  // A position closes at its tier's hazard 1 / L_t (the learner's lifetimes): of
  // the exposure at x, the share still open when price first reaches x within h
  // is E[exp(-tau_x / L_t); tau_x <= h] / P(tau_x <= h), tau_x the first-passage
  // time, whose law is the forecast's reach: P(tau_x <= s) = reach(x, s).
  // Integrated on kSteps times s_j = h (j / kSteps)^2 (denser near 0). Cost per
  // call: O(tiers * kSteps) exponentials, then kSteps reach lookups and
  // tiers * kSteps multiply-adds per bin within the reach of the horizon; bins
  // beyond it (no mass reaches them) keep the factor 1.
  constexpr int kSteps = 8;
  constexpr double kFarZ = 12.0;  // beyond this many sd of the horizon, reach is negligible
  survive_n_ = 0;
  const double p0 = fc_.anchor_price();
  if (!cfg_.forecast.generative_map || !cfg_.forecast.closing_hazard || !cfg_.learn || !cfg_.learn_mix ||
      !(horizon_s > 0.0) || !(p0 > 0.0) || n <= 0 || learners_.empty())
    return;
  const double sd_h = fc_.sigma(horizon_s);
  if (!(sd_h > 0.0)) return;
  // Cover the window and any map shift (the map is read at k - shift).
  survive_k0_ = k_lo - Forecaster::kShiftHalf - 1;
  survive_n_ = n + 2 * (Forecaster::kShiftHalf + 1);
  // The table depends on nothing else: the summed forecast and each venue's,
  // asked in a row, share it.
  const std::array<double, 6> key = {p0, fc_.variance_rate(), fc_.calibration_observations(), horizon_s,
                                     static_cast<double>(k_lo), static_cast<double>(n)};
  if (key == survive_key_) return;
  survive_key_.fill(std::numeric_limits<double>::quiet_NaN());  // invalid until filled below
  const auto& life = learners_.front().lifetimes_h();  // one config for every venue
  const std::size_t nt = life.size();
  const auto m = static_cast<std::size_t>(survive_n_);
  if (survive_scratch_.size() < nt * m) survive_scratch_.resize(nt * m);
  std::array<double, kSteps> sd{}, w_reach{};
  std::vector<double>& decay = survive_decay_;  // [t * kSteps + j] = exp(-s_mid_j / L_t)
  decay.resize(nt * kSteps);
  double prev_s = 0.0;
  for (int j = 0; j < kSteps; ++j) {
    const double f = static_cast<double>(j + 1) / kSteps;
    const double sj = horizon_s * f * f;
    sd[static_cast<std::size_t>(j)] = fc_.sigma(sj);
    for (std::size_t t = 0; t < nt; ++t)
      decay[t * kSteps + static_cast<std::size_t>(j)] = std::exp(-0.5 * (prev_s + sj) / (3600.0 * life[t]));
    prev_s = sj;
  }
  for (std::int64_t i = 0; i < survive_n_; ++i) {
    const std::int64_t k = survive_k0_ + i;
    const double z = k > 0 ? std::fabs(std::log(static_cast<double>(k) * grid_.step / p0)) : HUGE_VAL;
    if (z > kFarZ * sd_h) {
      for (std::size_t t = 0; t < nt; ++t) survive_scratch_[t * m + static_cast<std::size_t>(i)] = 1.0;
      continue;
    }
    double prev = 0.0;
    for (std::size_t j = 0; j < static_cast<std::size_t>(kSteps); ++j) {
      const double r = sd[j] > 0.0 ? fc_.survival(z / sd[j]) : (z <= 0.0 ? 1.0 : 0.0);
      w_reach[j] = std::max(0.0, r - prev);
      prev = std::max(prev, r);
    }
    for (std::size_t t = 0; t < nt; ++t) {
      const double* dt = decay.data() + t * kSteps;
      double alive = 0.0;
      for (std::size_t j = 0; j < static_cast<std::size_t>(kSteps); ++j) alive += w_reach[j] * dt[j];
      survive_scratch_[t * m + static_cast<std::size_t>(i)] = prev > 0.0 ? alive / prev : 1.0;
    }
  }
  survive_key_ = key;
}

void Engine::configure_forecast(const ForecastConfig& c) {
  if (last_ts_ != std::numeric_limits<std::int64_t>::min())
    throw std::logic_error("forecast settings can only change before the first event");
  fc_ = Forecaster(c, venues_.size());
  cfg_.forecast = c;
}

void Engine::forecast(int slot, double horizon_s, std::int64_t k_lo, std::int64_t n, double* long_out,
                      double* short_out, double* reach_out) const {
  if (slot >= static_cast<int>(venues_.size())) throw std::out_of_range("venue slot out of range");
  fill_survival(horizon_s, k_lo, n);
  fc_.fill(grid_, [this](std::size_t v, int s) { return forecast_map(v, s, true); }, slot,
           horizon_s, k_lo, n, long_out, short_out, reach_out);
}
// [forecast] end

void Engine::set_learning(std::size_t slot, bool enabled) { learn_.at(slot) = enabled ? 1 : 0; }

void Engine::heatmap(int slot, double* long_out, double* short_out) const {
  const auto n = static_cast<std::size_t>(grid_.n);
  if (slot >= 0) {
    const VenueState& v = venues_.at(static_cast<std::size_t>(slot));
    std::copy_n(v.book[0].map().begin(), n, long_out);
    std::copy_n(v.book[1].map().begin(), n, short_out);
    return;
  }
  std::fill_n(long_out, n, 0.0);
  std::fill_n(short_out, n, 0.0);
  for (const auto& v : venues_) {
    const double* l = v.book[0].map().data();
    const double* s = v.book[1].map().data();
    for (std::size_t i = 0; i < n; ++i) {
      long_out[i] += l[i];
      short_out[i] += s[i];
    }
  }
}

void Engine::open_book(int slot, double* long_out, double* short_out) const {
  const auto n = static_cast<std::size_t>(grid_.n);
  std::fill_n(long_out, n, 0.0);
  std::fill_n(short_out, n, 0.0);
  const std::size_t v0 = slot < 0 ? 0 : static_cast<std::size_t>(slot);
  const std::size_t v1 = slot < 0 ? venues_.size() : v0 + 1;
  if (v1 > venues_.size()) throw std::out_of_range("venue slot out of range");
  for (std::size_t v = v0; v < v1; ++v) {
    double* outs[2] = {long_out, short_out};
    for (int si = 0; si < 2; ++si) {
      const double* m = forecast_map(v, si);  // valid until the next call
      for (std::size_t i = 0; i < n; ++i) outs[si][i] += m[i];
    }
  }
}

// ---- cascade (cascade.hpp) -------------------------------------------------------

int Engine::cascade_clusters(Side side, double origin, Cluster* out, int max_out) const {
  if (side != Side::long_ && side != Side::short_) throw std::invalid_argument("side must be long or short");
  const SideWindow w = cascade_.window(side, origin, grid_.k0, grid_.n, grid_.step);
  if (w.count <= 0) return 0;
  const auto m = static_cast<std::size_t>(w.count);
  // Grows only when the grid has grown: no allocation per call in steady state.
  if (cascade_scratch_.size() < 2 * m) cascade_scratch_.resize(2 * static_cast<std::size_t>(grid_.n));
  double* sum = cascade_scratch_.data();
  std::fill_n(sum, m, 0.0);
  const int si = side_index(side);
  for (const auto& v : venues_) {
    const double* map = v.book[si].map().data();
    for (std::size_t j = 0; j < m; ++j)
      sum[j] += map[w.first + w.dir * static_cast<std::int64_t>(j) - grid_.k0];
  }
  return cascade_.find_clusters(sum, w, grid_.step, origin, out, max_out, sum + m);
}

int Engine::cascade(Side side, int levels, CascadeLevel* out) const {
  levels = std::clamp(levels, 0, kMaxCascadeLevels);
  if (levels == 0 || !(ref_price_ > 0.0)) return 0;
  std::array<Cluster, kMaxCascadeLevels> clusters;
  const int n = cascade_clusters(side, ref_price_, clusters.data(), levels);
  return cascade_.walk(side, ref_price_, clusters.data(), n, cfg_.learn, out);
}

void Engine::configure_cascade(const CascadeConfig& c) {
  cascade_ = CascadeModel(c, venues_.size());
  cfg_.cascade = c;
}

void Engine::cascade_on_price(std::size_t slot, std::int64_t ts, double price) {
  cascade_.on_price(slot, ts, price, cfg_.learn);
  // The engine records its own forecasts at a cadence; once resolved they fit the recalibration.
  if (cfg_.learn && cascade_.forecast_due(ts)) {
    std::array<CascadeLevel, kMaxCascadeLevels> levels;
    for (Side side : {Side::long_, Side::short_}) {
      const int n = cascade(side, kMaxCascadeLevels, levels.data());
      cascade_.record_forecast(ts, side, price, levels.data(), n);
    }
  }
}

void Engine::cascade_on_liquidation(Side side, double price, double notional, std::int64_t ts, bool learn) {
  std::array<Cluster, kMaxCascadeLevels> clusters;
  int n = 0;
  if (cascade_.opens_chain(ts, side)) n = cascade_clusters(side, price, clusters.data(), kMaxCascadeLevels);
  cascade_.on_liquidation(ts, side, price, notional, clusters.data(), n, learn);
}

}  // namespace heatcore
