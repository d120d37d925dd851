#include "heatcore/book.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace heatcore {

namespace {
constexpr std::int64_t kEmptyLo = SideBook::kEmptyLo;
constexpr std::int64_t kEmptyHi = SideBook::kEmptyHi;

// Level bin of entry bin e under ratio r (the lower of the two bins it is split over).
inline std::int64_t level_bin(std::int64_t e, double r) noexcept {
  return static_cast<std::int64_t>(std::floor(static_cast<double>(e) * r));
}
}  // namespace

SideBook::SideBook(Side side, std::vector<double> ratios, std::vector<double> weights)
    : side_(side), ratio_(std::move(ratios)), w_(std::move(weights)) {
  const std::size_t t = ratio_.size();
  tot_.assign(t, 0.0);
  consumed_.assign(t, 0.0);
  lo_.assign(t, kEmptyLo);
  hi_.assign(t, kEmptyHi);
  mk0_.assign(t, 0);
  moff_.assign(t, 0);
  mlen_.assign(t, 0);
  rmin_ = *std::min_element(ratio_.begin(), ratio_.end());
  rmax_ = *std::max_element(ratio_.begin(), ratio_.end());
  otot_.assign(4 * t, 0.0);
  oconsumed_usd_.assign(4 * t, 0.0);
  olo_.assign(4 * t, kEmptyLo);
  ohi_.assign(4 * t, kEmptyHi);
  set_cross_distance(1.0);
}

void SideBook::regrid(const PriceGrid& old_grid, const PriceGrid& new_grid) {
  // D and M_t are indexed by their own windows; only H follows the level grid.
  const auto nn = static_cast<std::size_t>(new_grid.n);
  const auto on = static_cast<std::size_t>(old_grid.n);
  const auto shift = static_cast<std::size_t>(old_grid.k0 - new_grid.k0);
  std::vector<double> h(nn, 0.0);
  if (on > 0) std::copy_n(map_.begin(), on, h.begin() + static_cast<std::ptrdiff_t>(shift));
  map_.swap(h);
  // The openings book has its own entry window: nothing to re-lay.
}

void SideBook::cover_openings(std::int64_t e) {
  if (on_ > 0 && e >= ok0_ && e < ok0_ + on_) return;
  std::int64_t k0, n;
  if (on_ == 0) {
    k0 = e - 64;
    n = 129;
  } else {
    const std::int64_t pad = std::max<std::int64_t>(64, on_ / 2);
    const std::int64_t old_hi = ok0_ + on_ - 1;
    k0 = e < ok0_ ? e - pad : ok0_;
    const std::int64_t hi = e > old_hi ? e + pad : old_hi;
    n = hi - k0 + 1;
  }
  const std::size_t rows = oratio_.size();
  std::vector<double> o(rows * static_cast<std::size_t>(n), 0.0);
  if (on_ > 0) {
    const auto shift = static_cast<std::size_t>(ok0_ - k0);
    for (std::size_t t = 0; t < rows; ++t)
      std::copy_n(o_.begin() + static_cast<std::ptrdiff_t>(t * static_cast<std::size_t>(on_)), on_,
                  o.begin() + static_cast<std::ptrdiff_t>(t * static_cast<std::size_t>(n) + shift));
  }
  o_.swap(o);
  ok0_ = k0;
  on_ = n;
}

void SideBook::layout_tier_maps(bool keep) {
  const std::size_t t_count = tiers();
  std::vector<std::int64_t> mk0(t_count);
  std::vector<std::size_t> moff(t_count), mlen(t_count);
  std::size_t total = 0;
  for (std::size_t t = 0; t < t_count; ++t) {
    moff[t] = total;
    if (en_ == 0) {
      mk0[t] = 0;
      mlen[t] = 0;
      continue;
    }
    // Entry bins ek0_ .. ek0_+en_-1 deposit into level bins floor(e r) and floor(e r) + 1.
    const std::int64_t a = level_bin(ek0_, ratio_[t]);
    const std::int64_t b = level_bin(ek0_ + en_ - 1, ratio_[t]) + 1;
    mk0[t] = a;
    mlen[t] = static_cast<std::size_t>(b - a + 1);
    total += mlen[t];
  }
  std::vector<double> m(total, 0.0);
  if (keep) {
    for (std::size_t t = 0; t < t_count; ++t) {
      const std::int64_t lo = std::max(mk0[t], mk0_[t]);
      const std::int64_t hi = std::min(mk0[t] + static_cast<std::int64_t>(mlen[t]),
                                       mk0_[t] + static_cast<std::int64_t>(mlen_[t]));
      for (std::int64_t k = lo; k < hi; ++k)
        m[moff[t] + static_cast<std::size_t>(k - mk0[t])] = tmap_[moff_[t] + static_cast<std::size_t>(k - mk0_[t])];
    }
  }
  tmap_.swap(m);
  mk0_.swap(mk0);
  moff_.swap(moff);
  mlen_.swap(mlen);
}

void SideBook::cover_entry(std::int64_t e) {
  if (en_ > 0 && e >= ek0_ && e < ek0_ + en_) return;
  std::int64_t k0, n;
  if (en_ == 0) {
    k0 = e - 64;
    n = 129;
  } else {
    // Headroom so that a drifting price costs amortised O(1) re-layouts.
    const std::int64_t pad = std::max<std::int64_t>(64, en_ / 2);
    const std::int64_t old_hi = ek0_ + en_ - 1;
    k0 = e < ek0_ ? e - pad : ek0_;
    const std::int64_t hi = e > old_hi ? e + pad : old_hi;
    n = hi - k0 + 1;
  }
  const std::size_t t_count = tiers();
  std::vector<double> d(t_count * static_cast<std::size_t>(n), 0.0);
  if (en_ > 0) {
    const auto shift = static_cast<std::size_t>(ek0_ - k0);
    for (std::size_t t = 0; t < t_count; ++t)
      std::copy_n(d_.begin() + static_cast<std::ptrdiff_t>(t * static_cast<std::size_t>(en_)), en_,
                  d.begin() + static_cast<std::ptrdiff_t>(t * static_cast<std::size_t>(n) + shift));
  }
  d_.swap(d);
  ek0_ = k0;
  en_ = n;
  layout_tier_maps(true);
}

void SideBook::deposit(const PriceGrid& g, std::size_t t, std::int64_t e, double qty, double sign) {
  // Level of entry bin e in bin units, split linearly between its two bins.
  const double x = static_cast<double>(e) * ratio_[t];
  const double kf = std::floor(x);
  const double frac = x - kf;
  const auto k = static_cast<std::int64_t>(kf);
  const double usd_t = sign * qty * x * g.step;
  // M_t: the tier's window covers every level of the entry window by construction.
  double* m = tmap_.data() + moff_[t] + static_cast<std::size_t>(k - mk0_[t]);
  m[0] += usd_t * (1.0 - frac);
  m[1] += usd_t * frac;
  if (sign < 0) {
    if (m[0] < 0) m[0] = 0;
    if (m[1] < 0) m[1] = 0;
  }
  const double usd = sign * w_[t] * qty * x * g.step;
  const auto i = static_cast<std::size_t>(k - g.k0);
  // Coverage is the engine's job; the guard keeps a bad caller from writing out of range.
  if (k < g.k0 || k + 1 >= g.k0 + g.n) return;
  const double before = map_[i] + map_[i + 1];
  map_[i] += usd * (1.0 - frac);
  map_[i + 1] += usd * frac;
  if (sign < 0) {
    if (map_[i] < 0) map_[i] = 0;
    if (map_[i + 1] < 0) map_[i + 1] = 0;
  }
  map_sum_ += map_[i] + map_[i + 1] - before;
}

void SideBook::add(const PriceGrid& g, std::size_t t, std::int64_t e, double qty) {
  cover_entry(e);
  row(t)[e - ek0_] += qty;
  tot_[t] += qty;
  lo_[t] = std::min(lo_[t], e);
  hi_[t] = std::max(hi_[t], e);
  deposit(g, t, e, qty, +1.0);
}

void SideBook::add_all_tiers(const PriceGrid& g, std::int64_t e, double qty) {
  for (std::size_t t = 0; t < tiers(); ++t) add(g, t, e, qty);
}

void SideBook::scale_tier(const PriceGrid& g, std::size_t t, double factor) {
  if (empty_tier(t)) return;
  double* d = row(t) + (lo_[t] - ek0_);
  const auto len = static_cast<std::size_t>(hi_[t] - lo_[t] + 1);
  for (std::size_t i = 0; i < len; ++i) d[i] *= factor;
  tot_[t] *= factor;
  // H loses w[t] * (1 - factor) of M_t over the levels of [lo, hi]; dense, so it vectorises.
  const std::int64_t a = level_bin(lo_[t], ratio_[t]);
  const std::int64_t b = level_bin(hi_[t], ratio_[t]) + 1;
  double* m = tmap_.data() + moff_[t];
  const double cut = w_[t] * (1.0 - factor);
  const std::int64_t ha = std::max(a, g.k0), hb = std::min(b, g.k0 + g.n - 1);
  if (cut != 0.0 && ha <= hb) {
    const double* ms = m + (ha - mk0_[t]);
    double* h = map_.data() + (ha - g.k0);
    const auto hn = static_cast<std::size_t>(hb - ha + 1);
    double removed = 0.0;
    for (std::size_t i = 0; i < hn; ++i) {
      const double next = std::max(h[i] - cut * ms[i], 0.0);
      removed += h[i] - next;
      h[i] = next;
    }
    map_sum_ -= removed;
  }
  double* ms = m + (a - mk0_[t]);
  const auto mn = static_cast<std::size_t>(b - a + 1);
  for (std::size_t i = 0; i < mn; ++i) ms[i] *= factor;
  if (factor == 0.0) {
    lo_[t] = kEmptyLo;
    hi_[t] = kEmptyHi;
  }
}

double SideBook::consume(const PriceGrid& g, double price) {
  const double u = price / g.step;  // price in bin units
  double expected = 0.0;
  for (std::size_t t = 0; t < tiers(); ++t) {
    if (empty_tier(t)) continue;
    double* rw = row(t);
    const double r = ratio_[t];
    if (side_ == Side::long_) {
      // Cheap exit before the division: the tier's highest level lies clearly
      // below price (the margin keeps the exact test below authoritative).
      if (static_cast<double>(hi_[t]) * r < u * (1.0 - 1e-12)) continue;
      // Longs at entry e die once price <= e * r, i.e. every e >= u / r.
      const double kc_f = std::ceil(u / r);
      if (kc_f > static_cast<double>(hi_[t])) continue;
      const std::int64_t kc = std::max(static_cast<std::int64_t>(kc_f), lo_[t]);
      for (std::int64_t e = hi_[t]; e >= kc; --e) {
        double& q = rw[e - ek0_];
        if (q == 0.0) continue;
        expected += w_[t] * q * static_cast<double>(e) * r * g.step;
        consumed_[t] += q;
        tot_[t] -= q;
        deposit(g, t, e, q, -1.0);
        q = 0.0;
      }
      hi_[t] = kc - 1;
    } else {
      if (static_cast<double>(lo_[t]) * r > u * (1.0 + 1e-12)) continue;
      // Shorts at entry e die once price >= e * r, i.e. every e <= u / r.
      const double kc_f = std::floor(u / r);
      if (kc_f < static_cast<double>(lo_[t])) continue;
      const std::int64_t kc = std::min(static_cast<std::int64_t>(kc_f), hi_[t]);
      for (std::int64_t e = lo_[t]; e <= kc; ++e) {
        double& q = rw[e - ek0_];
        if (q == 0.0) continue;
        expected += w_[t] * q * static_cast<double>(e) * r * g.step;
        consumed_[t] += q;
        tot_[t] -= q;
        deposit(g, t, e, q, -1.0);
        q = 0.0;
      }
      lo_[t] = kc + 1;
    }
    if (lo_[t] > hi_[t]) {
      lo_[t] = kEmptyLo;
      hi_[t] = kEmptyHi;
      tot_[t] = 0.0;  // drop rounding residue once the tier is empty
    }
  }
  // The openings book is crossed under the same rule (its own entry range). A
  // recency-weighted row shares its all-vintage row's ratio and lies inside its
  // range: it is crossed with it, and only if that one is.
  const std::size_t all_rows = oratio_.size() / 2;
  auto cross_row = [&](std::size_t t, double kc_f) {
    if (olo_[t] > ohi_[t]) return;
    std::int64_t first, last;
    if (side_ == Side::long_) {
      if (kc_f > static_cast<double>(ohi_[t])) return;
      first = std::max(static_cast<std::int64_t>(kc_f), olo_[t]);
      last = ohi_[t];
      ohi_[t] = first - 1;
    } else {
      if (kc_f < static_cast<double>(olo_[t])) return;
      first = olo_[t];
      last = std::min(static_cast<std::int64_t>(kc_f), ohi_[t]);
      olo_[t] = last + 1;
    }
    double* orw = orow(t);
    const double r = oratio_[t];
    for (std::int64_t e = first; e <= last; ++e) {
      double& q = orw[e - ok0_];
      if (q == 0.0) continue;
      oconsumed_usd_[t] += q * static_cast<double>(e) * r * g.step;
      otot_[t] -= q;
      q = 0.0;
    }
    if (olo_[t] > ohi_[t]) {
      olo_[t] = kEmptyLo;
      ohi_[t] = kEmptyHi;
      otot_[t] = 0.0;
    }
  };
  for (std::size_t t = 0; t < all_rows; ++t) {
    if (olo_[t] > ohi_[t]) continue;
    const double kc_f = side_ == Side::long_ ? std::ceil(u / oratio_[t]) : std::floor(u / oratio_[t]);
    if (side_ == Side::long_ ? kc_f > static_cast<double>(ohi_[t]) : kc_f < static_cast<double>(olo_[t])) continue;
    cross_row(t, kc_f);
    cross_row(all_rows + t, kc_f);
  }
  expected_usd_ += expected;
  return expected;
}

void SideBook::rebuild_tier_maps(const PriceGrid& g) {
  std::fill(tmap_.begin(), tmap_.end(), 0.0);
  for (std::size_t t = 0; t < tiers(); ++t) {
    if (empty_tier(t)) continue;
    const double* rw = row(t);
    const double r = ratio_[t];
    double* m = tmap_.data() + moff_[t];
    double total = 0.0;
    for (std::int64_t e = lo_[t]; e <= hi_[t]; ++e) {
      const double q = rw[e - ek0_];
      if (q == 0.0) continue;
      total += q;
      const double x = static_cast<double>(e) * r;
      const double kf = std::floor(x);
      const double frac = x - kf;
      const double usd = q * x * g.step;
      double* mk = m + (static_cast<std::int64_t>(kf) - mk0_[t]);
      mk[0] += usd * (1.0 - frac);
      mk[1] += usd * frac;
    }
    tot_[t] = total;  // re-anchor the running total on the stored mass
  }
}

void SideBook::map_from_tier_maps(const PriceGrid& g) {
  std::fill(map_.begin(), map_.end(), 0.0);
  for (std::size_t t = 0; t < tiers(); ++t) {
    if (empty_tier(t) || w_[t] == 0.0 || mlen_[t] == 0) continue;
    const std::int64_t a = std::max(mk0_[t], g.k0);
    const std::int64_t b = std::min(mk0_[t] + static_cast<std::int64_t>(mlen_[t]), g.k0 + g.n);
    if (a >= b) continue;
    const double wt = w_[t];
    const double* m = tmap_.data() + moff_[t] + (a - mk0_[t]);
    double* h = map_.data() + (a - g.k0);
    const auto len = static_cast<std::size_t>(b - a);
    for (std::size_t i = 0; i < len; ++i) h[i] += wt * m[i];
  }
  map_sum_ = std::accumulate(map_.begin(), map_.end(), 0.0);
}

void SideBook::rebuild_map(const PriceGrid& g) {
  rebuild_tier_maps(g);
  map_from_tier_maps(g);
}

void SideBook::set_weights(const PriceGrid& g, const std::vector<double>& w) {
  w_ = w;
  // M_t does not depend on the mix: H is a dense weighted sum of the tier maps.
  map_from_tier_maps(g);
}

void SideBook::set_ratios(const PriceGrid& g, const std::vector<double>& ratios) {
  ratio_ = ratios;
  rmin_ = *std::min_element(ratio_.begin(), ratio_.end());
  rmax_ = *std::max_element(ratio_.begin(), ratio_.end());
  set_cross_distance(cross_distance_);
  layout_tier_maps(false);
  rebuild_map(g);
}

void SideBook::tier_exposure_near(const PriceGrid& /*g*/, double x_lo, double x_hi, double* out) const {
  for (std::size_t t = 0; t < tiers(); ++t) {
    out[t] = 0.0;
    if (empty_tier(t)) continue;
    const double r = ratio_[t];
    const auto e_lo = std::max(static_cast<std::int64_t>(std::ceil(x_lo / r)), lo_[t]);
    const auto e_hi = std::min(static_cast<std::int64_t>(std::floor(x_hi / r)), hi_[t]);
    const double* rw = row(t);
    double s = 0.0;
    for (std::int64_t e = e_lo; e <= e_hi; ++e) s += rw[e - ek0_];
    out[t] = s;
  }
}

double SideBook::exposure_total() const noexcept {
  double s = 0.0;
  for (std::size_t t = 0; t < tiers(); ++t) s += w_[t] * tot_[t];
  return s;
}

std::size_t SideBook::memory_bytes() const noexcept {
  return sizeof(double) * (d_.capacity() + tmap_.capacity() + map_.capacity() + ratio_.capacity() +
                           w_.capacity() + tot_.capacity() + consumed_.capacity() + o_.capacity() +
                           oratio_.capacity() + otot_.capacity() + oconsumed_usd_.capacity()) +
         sizeof(std::int64_t) * (lo_.capacity() + hi_.capacity() + mk0_.capacity()) +
         sizeof(std::size_t) * (moff_.capacity() + mlen_.capacity());
}

void SideBook::set_cross_distance(double distance) {
  cross_distance_ = distance;
  const std::size_t t_count = tiers();
  oratio_.resize(4 * t_count);
  for (std::size_t t = 0; t < t_count; ++t) {
    oratio_[t] = ratio_[t];
    // The distance from entry to the level, stretched; a long cannot die below 1 % of entry.
    const double d = (ratio_[t] - 1.0) * distance;
    oratio_[t_count + t] = std::max(0.01, 1.0 + d);
    // The recency-weighted rows sit where the all-vintage rows do.
    oratio_[2 * t_count + t] = oratio_[t];
    oratio_[3 * t_count + t] = oratio_[t_count + t];
  }
}

void SideBook::add_openings(const PriceGrid& /*g*/, std::int64_t e, double qty) {
  cover_openings(e);
  for (std::size_t t = 0; t < oratio_.size(); ++t) {
    orow(t)[e - ok0_] += qty;
    otot_[t] += qty;
    olo_[t] = std::min(olo_[t], e);
    ohi_[t] = std::max(ohi_[t], e);
  }
}

void SideBook::seed_openings(const PriceGrid& g, std::int64_t e_lo, std::int64_t e_hi, std::int64_t e_now,
                             double seen_lo, double seen_hi, const double* qty_per_tier) {
  // The same survival rule as the engine's seeded exposure book: entries spread
  // uniformly over [e_lo, e_hi], keeping only levels that no price seen has crossed.
  const bool is_long = side_ == Side::long_;
  const std::size_t rows = 2 * tiers();   // all-vintage rows only
  for (std::size_t t = 0; t < rows; ++t) {
    const double q_all = qty_per_tier[t % tiers()];
    if (!(q_all > 0.0)) continue;
    const double r = oratio_[t];
    std::int64_t first = e_lo, last = e_hi;
    if (is_long) last = std::min(last, static_cast<std::int64_t>(std::ceil(seen_lo / (r * g.step))) - 1);
    else first = std::max(first, static_cast<std::int64_t>(std::floor(seen_hi / (r * g.step))) + 1);
    if (last < first) first = last = e_now;
    cover_openings(first);
    cover_openings(last);
    const double q = q_all / static_cast<double>(last - first + 1);
    double* row = orow(t);
    for (std::int64_t e = first; e <= last; ++e) row[e - ok0_] += q;
    otot_[t] += q_all;
    olo_[t] = std::min(olo_[t], first);
    ohi_[t] = std::max(ohi_[t], last);
  }
}

void SideBook::age_openings(const PriceGrid& /*g*/, const double* factor_per_tier, double recent_factor) {
  const std::size_t nt = tiers();
  for (std::size_t t = 0; t < oratio_.size(); ++t) {
    if (olo_[t] > ohi_[t]) continue;
    double* row = orow(t);
    const double factor = factor_per_tier[t % nt] * (t >= 2 * nt ? recent_factor : 1.0);
    if (factor == 1.0) continue;
    for (std::int64_t e = olo_[t]; e <= ohi_[t]; ++e) row[e - ok0_] *= factor;
    otot_[t] *= factor;
  }
}

void SideBook::openings_near(const PriceGrid& /*g*/, double x_lo, double x_hi, const double* scale,
                             double* out) const {
  // out: 4 * tiers() values, the all-vintage rows then the recency-weighted ones
  // (which share their all-vintage row's ratio and lie inside its range).
  const std::size_t all_rows = oratio_.size() / 2;
  for (std::size_t t = 0; t < all_rows; ++t) {
    out[t] = out[all_rows + t] = 0.0;
    if (olo_[t] > ohi_[t]) continue;
    const double r = oratio_[t] / scale[t % tiers()];
    const auto k_lo = static_cast<std::int64_t>(std::ceil(x_lo / r));
    const auto k_hi = static_cast<std::int64_t>(std::floor(x_hi / r));
    for (const std::size_t row : {t, all_rows + t}) {
      const auto e_lo = std::max(k_lo, olo_[row]);
      const auto e_hi = std::min(k_hi, ohi_[row]);
      const double* w = orow(row);
      double sum = 0.0;
      for (std::int64_t e = e_lo; e <= e_hi; ++e) sum += w[e - ok0_];
      out[row] = sum;
    }
  }
}

void SideBook::generative_map(const PriceGrid& g, const double* u, const double* pre, double cross, double* out,
                              const double* survive, std::int64_t survive_k0, std::int64_t survive_n) const {
  std::fill_n(out, static_cast<std::size_t>(g.n), 0.0);
  const std::size_t nt = tiers();
  const std::int64_t g_hi = g.k0 + g.n;
  auto factor = [&](std::size_t t, std::int64_t k) {
    const std::int64_t i = k - survive_k0;
    return survive == nullptr || i < 0 || i >= survive_n ? 1.0
                                                         : survive[t * static_cast<std::size_t>(survive_n) + static_cast<std::size_t>(i)];
  };
  // The all-vintage rows (isolated, then cross): the recency-weighted copies are evidence weights.
  for (std::size_t row = 0; row < 2 * nt; ++row) {
    const std::size_t t = row % nt;
    const double share = row < nt ? 1.0 - cross : cross;
    if (!(u[t] > 0.0) || !(share > 0.0) || olo_[row] > ohi_[row]) continue;
    const double r = oratio_[row];
    const double* orw = orow(row);
    const double f = u[t] * share * g.step;
    for (std::int64_t e = olo_[row]; e <= ohi_[row]; ++e) {
      const double q = orw[e - ok0_];
      if (q == 0.0) continue;
      // Level of entry bin e in bin units, split linearly between its two bins.
      const double x = static_cast<double>(e) * r;
      const double kf = std::floor(x);
      const auto k = static_cast<std::int64_t>(kf);
      if (k < g.k0 || k + 1 >= g_hi) continue;
      const double usd = f * q * x;
      const double frac = x - kf;
      out[k - g.k0] += usd * (1.0 - frac) * factor(t, k);
      out[k + 1 - g.k0] += usd * frac * factor(t, k + 1);
    }
  }
  // The older book: where the exposure book holds the tier, in its proportions.
  for (std::size_t t = 0; t < nt; ++t) {
    const double mass = u[t] * pre[t];
    if (!(mass > 0.0) || empty_tier(t) || mlen_[t] == 0) continue;
    const double* m = tmap_.data() + moff_[t];
    double sum = 0.0;
    for (std::size_t i = 0; i < mlen_[t]; ++i) sum += m[i];
    if (!(sum > 0.0)) continue;
    const std::int64_t a = std::max(mk0_[t], g.k0);
    const std::int64_t b = std::min(mk0_[t] + static_cast<std::int64_t>(mlen_[t]), g_hi);
    const double scale = mass / sum;
    for (std::int64_t k = a; k < b; ++k) out[k - g.k0] += scale * m[k - mk0_[t]] * factor(t, k);
  }
}

}  // namespace heatcore
