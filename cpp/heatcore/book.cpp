#include "heatcore/book.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace heatcore {

namespace {
constexpr std::int64_t kEmptyLo = std::numeric_limits<std::int64_t>::max() / 4;
constexpr std::int64_t kEmptyHi = std::numeric_limits<std::int64_t>::min() / 4;
}  // namespace

SideBook::SideBook(Side side, std::vector<double> ratios, std::vector<double> weights)
    : side_(side), ratio_(std::move(ratios)), w_(std::move(weights)) {
  const std::size_t t = ratio_.size();
  tot_.assign(t, 0.0);
  consumed_.assign(t, 0.0);
  otot_.assign(2 * t, 0.0);
  oconsumed_usd_.assign(2 * t, 0.0);
  olo_.assign(2 * t, kEmptyLo);
  ohi_.assign(2 * t, kEmptyHi);
  set_cross_distance(1.0);
  lo_.assign(t, kEmptyLo);
  hi_.assign(t, kEmptyHi);
  rmin_ = *std::min_element(ratio_.begin(), ratio_.end());
  rmax_ = *std::max_element(ratio_.begin(), ratio_.end());
}

void SideBook::regrid(const PriceGrid& old_grid, const PriceGrid& new_grid) {
  const std::size_t t_count = tiers();
  const auto nn = static_cast<std::size_t>(new_grid.n);
  const auto on = static_cast<std::size_t>(old_grid.n);
  const auto shift = static_cast<std::size_t>(old_grid.k0 - new_grid.k0);
  std::vector<double> d(t_count * nn, 0.0);
  std::vector<double> h(nn, 0.0);
  std::vector<double> o(2 * t_count * nn, 0.0);
  if (on > 0) {
    for (std::size_t t = 0; t < t_count; ++t)
      std::copy_n(d_.begin() + static_cast<std::ptrdiff_t>(t * on), on,
                  d.begin() + static_cast<std::ptrdiff_t>(t * nn + shift));
    for (std::size_t t = 0; t < 2 * t_count; ++t)
      std::copy_n(o_.begin() + static_cast<std::ptrdiff_t>(t * on), on,
                  o.begin() + static_cast<std::ptrdiff_t>(t * nn + shift));
    std::copy_n(map_.begin(), on, h.begin() + static_cast<std::ptrdiff_t>(shift));
  }
  d_.swap(d);
  map_.swap(h);
  o_.swap(o);
}

void SideBook::deposit(const PriceGrid& g, std::size_t t, std::int64_t e, double qty, double sign) {
  // Level of entry bin e in bin units, split linearly between its two bins.
  const double x = static_cast<double>(e) * ratio_[t];
  const double kf = std::floor(x);
  const double frac = x - kf;
  const auto k = static_cast<std::int64_t>(kf);
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
  d_[t * static_cast<std::size_t>(g.n) + static_cast<std::size_t>(e - g.k0)] += qty;
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
  double* row = d_.data() + t * static_cast<std::size_t>(g.n);
  for (std::int64_t e = lo_[t]; e <= hi_[t]; ++e) row[e - g.k0] *= factor;
  tot_[t] *= factor;
  if (factor == 0.0) {
    lo_[t] = kEmptyLo;
    hi_[t] = kEmptyHi;
  }
}

double SideBook::consume(const PriceGrid& g, double price) {
  const double u = price / g.step;  // price in bin units
  double expected = 0.0;
  const auto n = static_cast<std::size_t>(g.n);
  for (std::size_t t = 0; t < tiers(); ++t) {
    if (empty_tier(t)) continue;
    double* row = d_.data() + t * n;
    const double r = ratio_[t];
    if (side_ == Side::long_) {
      // Longs at entry e die once price <= e * r, i.e. every e >= u / r.
      const double kc_f = std::ceil(u / r);
      if (kc_f > static_cast<double>(hi_[t])) continue;
      const std::int64_t kc = std::max(static_cast<std::int64_t>(kc_f), lo_[t]);
      for (std::int64_t e = hi_[t]; e >= kc; --e) {
        double& q = row[e - g.k0];
        if (q == 0.0) continue;
        expected += w_[t] * q * static_cast<double>(e) * r * g.step;
        consumed_[t] += q;
        tot_[t] -= q;
        deposit(g, t, e, q, -1.0);
        q = 0.0;
      }
      hi_[t] = kc - 1;
    } else {
      // Shorts at entry e die once price >= e * r, i.e. every e <= u / r.
      const double kc_f = std::floor(u / r);
      if (kc_f < static_cast<double>(lo_[t])) continue;
      const std::int64_t kc = std::min(static_cast<std::int64_t>(kc_f), hi_[t]);
      for (std::int64_t e = lo_[t]; e <= kc; ++e) {
        double& q = row[e - g.k0];
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
  expected_usd_ += expected;
  // The openings book is crossed under the same rule (its own entry range).
  for (std::size_t t = 0; t < oratio_.size(); ++t) {
    if (olo_[t] > ohi_[t]) continue;
    double* row = o_.data() + t * n;
    const double r = oratio_[t];
    std::int64_t first, last;
    if (side_ == Side::long_) {
      const double kc_f = std::ceil(u / r);
      if (kc_f > static_cast<double>(ohi_[t])) continue;
      first = std::max(static_cast<std::int64_t>(kc_f), olo_[t]);
      last = ohi_[t];
      ohi_[t] = first - 1;
    } else {
      const double kc_f = std::floor(u / r);
      if (kc_f < static_cast<double>(olo_[t])) continue;
      first = olo_[t];
      last = std::min(static_cast<std::int64_t>(kc_f), ohi_[t]);
      olo_[t] = last + 1;
    }
    for (std::int64_t e = first; e <= last; ++e) {
      double& q = row[e - g.k0];
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
  }
  return expected;
}

void SideBook::rebuild_map(const PriceGrid& g) {
  std::fill(map_.begin(), map_.end(), 0.0);
  map_sum_ = 0.0;
  const auto n = static_cast<std::size_t>(g.n);
  for (std::size_t t = 0; t < tiers(); ++t) {
    if (empty_tier(t)) continue;
    const double* row = d_.data() + t * n;
    const bool weighted = w_[t] != 0.0;
    double total = 0.0;
    for (std::int64_t e = lo_[t]; e <= hi_[t]; ++e) {
      const double q = row[e - g.k0];
      if (q == 0.0) continue;
      total += q;
      if (weighted) deposit(g, t, e, q, +1.0);
    }
    tot_[t] = total;  // re-anchor the running total on the stored mass
  }
}

void SideBook::set_weights(const PriceGrid& g, const std::vector<double>& w) {
  w_ = w;
  rebuild_map(g);
}

void SideBook::set_ratios(const PriceGrid& g, const std::vector<double>& ratios) {
  ratio_ = ratios;
  set_cross_distance(cross_distance_);
  rmin_ = *std::min_element(ratio_.begin(), ratio_.end());
  rmax_ = *std::max_element(ratio_.begin(), ratio_.end());
  rebuild_map(g);
}

void SideBook::tier_exposure_near(const PriceGrid& g, double x_lo, double x_hi, double* out) const {
  const auto n = static_cast<std::size_t>(g.n);
  for (std::size_t t = 0; t < tiers(); ++t) {
    out[t] = 0.0;
    if (empty_tier(t)) continue;
    const double r = ratio_[t];
    const auto e_lo = std::max(static_cast<std::int64_t>(std::ceil(x_lo / r)), lo_[t]);
    const auto e_hi = std::min(static_cast<std::int64_t>(std::floor(x_hi / r)), hi_[t]);
    const double* row = d_.data() + t * n;
    double s = 0.0;
    for (std::int64_t e = e_lo; e <= e_hi; ++e) s += row[e - g.k0];
    out[t] = s;
  }
}

double SideBook::exposure_total() const noexcept {
  double s = 0.0;
  for (std::size_t t = 0; t < tiers(); ++t) s += w_[t] * tot_[t];
  return s;
}


void SideBook::set_cross_distance(double distance) {
  cross_distance_ = distance;
  const std::size_t t_count = tiers();
  oratio_.resize(2 * t_count);
  for (std::size_t t = 0; t < t_count; ++t) {
    oratio_[t] = ratio_[t];
    // The distance from entry to the level, stretched; a long cannot die below 1 % of entry.
    const double d = (ratio_[t] - 1.0) * distance;
    oratio_[t_count + t] = std::max(0.01, 1.0 + d);
  }
}

void SideBook::add_openings(const PriceGrid& g, std::int64_t e, double qty) {
  const auto n = static_cast<std::size_t>(g.n);
  for (std::size_t t = 0; t < oratio_.size(); ++t) {
    o_[t * n + static_cast<std::size_t>(e - g.k0)] += qty;
    otot_[t] += qty;
    olo_[t] = std::min(olo_[t], e);
    ohi_[t] = std::max(ohi_[t], e);
  }
}

void SideBook::age_openings(const PriceGrid& g, const double* factor_per_tier) {
  const auto n = static_cast<std::size_t>(g.n);
  for (std::size_t t = 0; t < oratio_.size(); ++t) {
    if (olo_[t] > ohi_[t]) continue;
    double* row = o_.data() + t * n;
    const double factor = factor_per_tier[t % tiers()];
    for (std::int64_t e = olo_[t]; e <= ohi_[t]; ++e) row[e - g.k0] *= factor;
    otot_[t] *= factor;
  }
}

void SideBook::openings_near(const PriceGrid& g, double x_lo, double x_hi, const double* scale,
                             double* out) const {
  const auto n = static_cast<std::size_t>(g.n);
  for (std::size_t t = 0; t < oratio_.size(); ++t) {
    out[t] = 0.0;
    if (olo_[t] > ohi_[t]) continue;
    const double r = oratio_[t] / scale[t % tiers()];
    const auto e_lo = std::max(static_cast<std::int64_t>(std::ceil(x_lo / r)), olo_[t]);
    const auto e_hi = std::min(static_cast<std::int64_t>(std::floor(x_hi / r)), ohi_[t]);
    const double* row = o_.data() + t * n;
    double s = 0.0;
    for (std::int64_t e = e_lo; e <= e_hi; ++e) s += row[e - g.k0];
    out[t] = s;
  }
}

}  // namespace heatcore
