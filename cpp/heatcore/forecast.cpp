#include "heatcore/forecast.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace heatcore {

namespace {

constexpr double kSecondsPerYear = 365.0 * 86400.0;

// Brownian running maximum: P(max_{[0,h]} W >= z sd(h)) = erfc(z / sqrt 2).
double brownian_survival(double z) { return z <= 0.0 ? 1.0 : std::erfc(z / std::sqrt(2.0)); }

// Discrete Laplace kernel normalised over all integer offsets.
double laplace(double offset_bins, double scale_bins) {
  return std::tanh(0.5 / scale_bins) * std::exp(-std::fabs(offset_bins) / scale_bins);
}

double shrink(double num, double den, double n, double n0, double prior) {
  const double mle = den > 0.0 ? num / den : prior;
  const double x = (n * mle + n0 * prior) / (n + n0);
  return std::clamp(x, prior * 1e-4, prior * 1e4);
}

}  // namespace

Forecaster::Forecaster(const ForecastConfig& cfg, std::size_t venues) : cfg_(cfg), venues_(venues) {
  auto positive = [](double x) { return std::isfinite(x) && x > 0.0; };
  if (!positive(cfg_.vol_tau_s) || !positive(cfg_.em_map_horizon_s) || !positive(cfg_.ref_horizon_s) || !positive(cfg_.checkpoint_every_s) ||
      !positive(cfg_.burst_tau_s) || !positive(cfg_.base_tau_s) || !positive(cfg_.background_prior) || !positive(cfg_.em_every_s) || !positive(cfg_.em_tau_s) ||
      !positive(cfg_.vol_prior_annual))
    throw std::invalid_argument("forecast: time constants and the prior volatility must be positive");
  if (!(cfg_.vol_min_dt_s >= 0.0) || !(cfg_.calib_prior_n > 0.0) || !(cfg_.em_prior_n > 0.0) ||
      !(cfg_.calib_forget > 0.0 && cfg_.calib_forget <= 1.0) || !positive(cfg_.reach_prior) ||
      !positive(cfg_.cont_prior) || !(cfg_.liq_anchor_after_s >= 0.0))
    throw std::invalid_argument("forecast: invalid prior or forgetting setting");
  var_rate_ = cfg_.vol_prior_annual * cfg_.vol_prior_annual / kSecondsPerYear;
  for (auto& v : venues_)
    for (int s = 0; s < 2; ++s) {
      v.a[s] = cfg_.reach_prior;
      v.b[s] = cfg_.cont_prior;
      v.c[s] = cfg_.background_prior;
    }
  if (!positive(cfg_.offset_prior_n) || !positive(cfg_.offset_prior_bins) ||
      !(cfg_.offset_forget > 0.0 && cfg_.offset_forget <= 1.0) ||
      !(cfg_.shift_forget > 0.0 && cfg_.shift_forget <= 1.0) || !(cfg_.shift_prior_nats >= 0.0))
    throw std::invalid_argument("forecast: invalid continuation kernel prior");
  prior_kernel_.assign(2 * kOffsetHalf + 1, 0.0);
  for (int j = -kOffsetHalf; j <= kOffsetHalf; ++j)
    prior_kernel_[static_cast<std::size_t>(j + kOffsetHalf)] =
        cfg_.offset_prior_n * laplace(j, cfg_.offset_prior_bins);
  for (auto& v : venues_)
    for (int s = 0; s < 2; ++s) {
      v.offsets[s].assign(2 * kOffsetHalf + 1, 0.0);
      v.shift_score[s].assign(2 * kShiftHalf + 1, 0.0);
      for (int d = -kShiftHalf; d <= kShiftHalf; ++d)
        v.shift_score[s][static_cast<std::size_t>(d + kShiftHalf)] = -cfg_.shift_prior_nats * std::abs(d);
      v.kernel[s].assign(2 * kOffsetHalf + 1, 0.0);
      rebuild_kernel(v, s);
    }
  ring_.assign(kMaxCheckpoints, Checkpoint{});
  calib_count_.assign(kCalibBins + 1, 0.0);
  calib_prior_.assign(kCalibBins + 1, 0.0);
  for (int k = 0; k < kCalibBins; ++k)
    calib_prior_[k] = cfg_.calib_prior_n *
                      (brownian_survival(k * kCalibDz) - brownian_survival((k + 1) * kCalibDz));
  calib_prior_[kCalibBins] = cfg_.calib_prior_n * brownian_survival(kCalibBins * kCalibDz);
  surv_.assign(kCalibBins + 1, 0.0);
  rebuild_survival();
}

void Forecaster::rebuild_survival() {
  double total = 0.0;
  for (int k = 0; k <= kCalibBins; ++k) total += calib_count_[k] + calib_prior_[k];
  double tail = 0.0;
  for (int k = kCalibBins; k >= 0; --k) {
    tail += calib_count_[k] + calib_prior_[k];
    surv_[k] = tail / total;
  }
  mean_z_ = 0.0;
  for (int k = 0; k < kCalibBins; ++k) mean_z_ += 0.5 * (surv_[k] + surv_[k + 1]) * kCalibDz;
  mean_z_ += surv_[kCalibBins] * 0.5;  // the exponential tail beyond the histogram
}

double Forecaster::reach_norm(double price, double horizon_s, double step) const noexcept {
  // sum_k reach(k) ~ 2 * integral_0^inf S(d / sd) dp / step with dp ~ p dd.
  return std::max(1.0, 2.0 * price * sigma(horizon_s) * mean_z_ / step);
}

double Forecaster::survival(double z) const noexcept {
  if (!(z > 0.0)) return 1.0;
  const double u = z / kCalibDz;
  if (u >= kCalibBins) {
    // Beyond the histogram: the overflow mass, thinning exponentially.
    return surv_[kCalibBins] * std::exp(-2.0 * (z - kCalibBins * kCalibDz));
  }
  const auto k = static_cast<int>(u);
  const double f = u - k;
  // Geometric interpolation: survival falls roughly exponentially across a bin.
  const double next = surv_[k + 1 <= kCalibBins ? k + 1 : kCalibBins];
  if (next > 0.0 && surv_[k] > 0.0) return surv_[k] * std::pow(next / surv_[k], f);
  return surv_[k] * (1.0 - f) + next * f;
}

double Forecaster::sigma(double horizon_s) const noexcept {
  return std::sqrt(var_rate_ * std::max(horizon_s, 0.0));
}

double Forecaster::reach(double log_distance, double horizon_s) const noexcept {
  const double sd = sigma(horizon_s);
  if (!(sd > 0.0)) return log_distance <= 0.0 ? 1.0 : 0.0;
  return survival(std::fabs(log_distance) / sd);
}

double Forecaster::anchor_price() const noexcept {
  if (last_liq_price_ > 0.0 &&
      (last_price_ <= 0.0 || last_liq_ts_ - last_price_ts_ > cfg_.liq_anchor_after_s))
    return last_liq_price_;
  return last_price_;
}

void Forecaster::finish_checkpoint(const Checkpoint& c, double age_s) {
  const double sd = c.sd * std::sqrt(std::max(age_s, 1.0));
  if (!(sd > 0.0)) return;
  for (double& x : calib_count_) x *= cfg_.calib_forget;
  for (double move : {c.up, c.down}) {
    const double z = move / sd;
    const int k = std::min(kCalibBins, static_cast<int>(std::max(z, 0.0) / kCalibDz));
    calib_count_[k] += 1.0;
  }
  calib_n_ = 0.0;
  for (double x : calib_count_) calib_n_ += x;
  rebuild_survival();
}

void Forecaster::on_price(std::int64_t ts_ms, double price) {
  const double t = static_cast<double>(ts_ms) * 1e-3;
  const double lp = std::log(price);
  now_s_ = std::max(now_s_, t);
  // Realised variance rate: returns over at least vol_min_dt_s, so that venue
  // basis and tick noise between near-simultaneous updates do not read as volatility.
  if (!have_sample_) {
    sample_ts_ = t;
    sample_log_p_ = lp;
    have_sample_ = true;
  } else if (t - sample_ts_ >= std::max(cfg_.vol_min_dt_s, 1e-3)) {
    const double r = std::clamp(lp - sample_log_p_, -std::log(2.0), std::log(2.0));
    const double dt = t - sample_ts_;
    const double alpha = 1.0 - std::exp(-dt / cfg_.vol_tau_s);
    var_rate_ = (1.0 - alpha) * var_rate_ + alpha * (r * r / dt);
    // A flat feed must not collapse sigma to zero: keep 1 % of the prior.
    const double floor = 1e-4 * cfg_.vol_prior_annual * cfg_.vol_prior_annual / kSecondsPerYear;
    var_rate_ = std::max(var_rate_, floor);
    sample_ts_ = t;
    sample_log_p_ = lp;
  }
  // Reach recalibration: extend every open checkpoint's excursions, then close
  // the ones that have lived a reference horizon.
  if (cfg_.learn) {
    for (int i = 0; i < ring_size_; ++i) {
      Checkpoint& c = ring_[(ring_head_ + i) % kMaxCheckpoints];
      c.up = std::max(c.up, lp - c.log_p);
      c.down = std::max(c.down, c.log_p - lp);
    }
    while (ring_size_ > 0) {
      const Checkpoint& c = ring_[ring_head_];
      const double age = t - c.ts;
      if (age < cfg_.ref_horizon_s) break;
      finish_checkpoint(c, age);
      ring_head_ = (ring_head_ + 1) % kMaxCheckpoints;
      --ring_size_;
    }
    if (t - last_checkpoint_ts_ >= cfg_.checkpoint_every_s && ring_size_ < kMaxCheckpoints) {
      ring_[(ring_head_ + ring_size_) % kMaxCheckpoints] = Checkpoint{t, lp, std::sqrt(var_rate_), 0.0, 0.0};
      ++ring_size_;
      last_checkpoint_ts_ = t;
    }
  }
  last_price_ = price;
  last_price_ts_ = t;
}

void Forecaster::advance(VenueForecastState& v, int s, double t) const {
  // Integrals of the continuation and background intensities, R/tau and B/tau_b,
  // over (last update, t]: the EM's exposures for b and c.
  if (t > v.burst_ts[s]) {
    const double decay = std::exp(-(t - v.burst_ts[s]) / cfg_.burst_tau_s);
    v.den_cont[s] += v.burst[s] * (1.0 - decay);
    v.burst[s] *= decay;
    v.burst_ts[s] = t;
  }
  if (t > v.base_ts[s]) {
    const double decay = std::exp(-(t - v.base_ts[s]) / cfg_.base_tau_s);
    v.den_bg[s] += v.base[s] * (1.0 - decay);
    v.base[s] *= decay;
    v.base_ts[s] = t;
  }
}

void Forecaster::rebuild_kernel(VenueForecastState& v, int s) const {
  auto& k = v.kernel[s];
  const auto& c = v.offsets[s];
  double tot = 0.0;
  for (int j = -kOffsetHalf; j <= kOffsetHalf; ++j) {
    const auto i = static_cast<std::size_t>(j + kOffsetHalf);
    k[i] = c[i] + prior_kernel_[i];
    tot += k[i];
  }
  double m = 0.0, m2 = 0.0;
  for (int j = -kOffsetHalf; j <= kOffsetHalf; ++j) {
    const auto i = static_cast<std::size_t>(j + kOffsetHalf);
    k[i] /= tot;
    m += j * k[i];
    m2 += static_cast<double>(j) * j * k[i];
  }
  v.kernel_mean[s] = m;
  v.kernel_var[s] = std::max(m2 - m * m, 0.0);
}

double Forecaster::diffusion_bins(const VenueForecastState& v, int s, double step) const {
  const double age = std::max(0.0, now_s_ - v.anchor_ts[s]);
  return v.anchor[s] * std::sqrt(var_rate_ * age) / step;
}

double Forecaster::cont_kernel(const VenueForecastState& v, int s, double offset, double wide) const {
  const auto& k = v.kernel[s];
  if (wide < 0.5) {
    const double j = std::round(offset);
    return std::fabs(j) <= kOffsetHalf ? k[static_cast<std::size_t>(j + kOffsetHalf)] : 0.0;
  }
  if (wide > 8.0) {
    // Diffusion dominates the learned detail: keep its first two moments.
    const double sc = std::sqrt(wide * wide + 0.5 * v.kernel_var[s]);
    return laplace(offset - std::round(v.kernel_mean[s]), sc);
  }
  // One point of the convolution: powers of r = e^{-1/wide} outward from the offset.
  const double r = std::exp(-1.0 / wide);
  const auto o = static_cast<int>(std::lround(offset));
  double sum = 0.0;
  const int j0 = std::min(o, kOffsetHalf);
  double w = std::pow(r, o - j0);
  for (int j = j0; j >= -kOffsetHalf; --j, w *= r) sum += k[static_cast<std::size_t>(j + kOffsetHalf)] * w;
  const int j1 = std::max(o + 1, -kOffsetHalf);
  w = std::pow(r, j1 - o);
  for (int j = j1; j <= kOffsetHalf; ++j, w *= r) sum += k[static_cast<std::size_t>(j + kOffsetHalf)] * w;
  return std::tanh(0.5 / wide) * sum;
}

void Forecaster::on_liquidation(std::size_t slot, Side side, std::int64_t ts_ms, double price,
                                double notional_usd, double step) {
  VenueForecastState& v = venues_.at(slot);
  const int s = side_index(side);
  const double t = static_cast<double>(ts_ms) * 1e-3;
  now_s_ = std::max(now_s_, t);
  advance(v, s, t);
  // Intensities (USD per second per bin) of the two parts at the event's bin, from
  // the state before the event (the map part as of the last refresh).
  const double h = cfg_.ref_horizon_s;
  const auto k = static_cast<std::int64_t>(std::llround(price / step));
  const auto& lag = v.lagged[s];
  const auto lag_n = static_cast<std::int64_t>(lag.size());
  auto lag_at = [&](std::int64_t d) {  // the lagged map at the event's bin under shift d
    const std::int64_t i = k - d - v.lagged_k0[s];
    return (i >= 0 && i < lag_n) ? lag[static_cast<std::size_t>(i)] : 0.0;
  };
  const double lam_map = v.a[s] * lag_at(v.shift[s]);
  double lam_cont = 0.0;
  const double off = std::round(price / step) - std::round(v.anchor[s] / step);
  if (v.anchor[s] > 0.0 && v.burst[s] > 0.0)
    lam_cont = v.b[s] * v.burst[s] / cfg_.burst_tau_s * cont_kernel(v, s, off, diffusion_bins(v, s, step));
  double lam_bg = 0.0;
  const double p0 = anchor_price();
  if (v.base[s] > 0.0 && p0 > 0.0)
    lam_bg = v.c[s] * v.base[s] / cfg_.base_tau_s * reach(std::log(price / p0), h) / reach_norm(p0, h, step);
  const double tot = lam_map + lam_cont + lam_bg;
  if (cfg_.learn && lag_n > 0) {
    // Score every candidate shift of the map by this event's likelihood.
    auto& sc = v.shift_score[s];
    const double rest = lam_cont + lam_bg + 1e-300;
    int best = v.shift[s];
    for (int d = -kShiftHalf; d <= kShiftHalf; ++d) {
      auto& x = sc[static_cast<std::size_t>(d + kShiftHalf)];
      x = cfg_.shift_forget * x + std::log(v.a[s] * lag_at(d) + rest);
      if (x > sc[static_cast<std::size_t>(best + kShiftHalf)]) best = d;
    }
    v.shift[s] = best;
  }
  if (!(tot > 0.0)) {
    ++v.unexplained[s];
  } else if (cfg_.learn) {
    v.num_map[s] += notional_usd * lam_map / tot;
    v.num_cont[s] += notional_usd * lam_cont / tot;
    v.num_bg[s] += notional_usd * lam_bg / tot;
  }
  if (cfg_.learn) {
    v.events[s] += 1.0;
    // Where this event landed relative to the last one, if it plausibly continues it.
    const double snap_off = std::round(price / step) - std::round(v.snap_anchor[s] / step);
    if (v.snap_anchor[s] > 0.0 && t - v.snap_anchor_ts[s] <= cfg_.burst_tau_s &&
        std::fabs(snap_off) <= kOffsetHalf) {
      for (double& x : v.offsets[s]) x *= cfg_.offset_forget;
      v.offsets[s][static_cast<std::size_t>(snap_off + kOffsetHalf)] += 1.0;
      rebuild_kernel(v, s);
    }
  }
  v.burst[s] += notional_usd;
  v.base[s] += notional_usd;
  v.anchor[s] = price;
  v.anchor_ts[s] = t;
  last_liq_price_ = price;
  last_liq_ts_ = t;
}

void Forecaster::lag_map(const PriceGrid& g, const double* map_all, VenueForecastState& v, int s) const {
  auto& lag = v.lagged[s];
  lag.clear();  // keeps capacity: no allocation once the window size has been seen
  v.map_rate[s] = 0.0;
  if (lag_reach_.empty() || g.n == 0) return;
  const std::int64_t lo = std::max(lag_k0_, g.k0);
  const std::int64_t hi = std::min(lag_k0_ + static_cast<std::int64_t>(lag_reach_.size()), g.k0 + g.n);
  if (hi <= lo) return;
  const double* map = map_all + (lo - g.k0);
  const double* rw = lag_reach_.data() + (lo - lag_k0_);
  v.lagged_k0[s] = lo;
  double sum = 0.0;
  for (std::int64_t i = 0; i < hi - lo; ++i) {
    const double w = map[i] > 0.0 ? map[i] * rw[i] : 0.0;
    lag.push_back(w);
    sum += w;
  }
  v.map_rate[s] = sum;
}

void Forecaster::begin_refresh(std::int64_t ts_ms, const PriceGrid& g) {
  const double t = static_cast<double>(ts_ms) * 1e-3;
  // Reach from the current anchor over the reference horizon, shared by every venue.
  lag_reach_.clear();
  const double p0 = anchor_price();
  if (p0 > 0.0 && g.n > 0) {
    const double h = cfg_.em_map_horizon_s;
    // Beyond z = 12 the calibrated survival is negligible.
    const double dmax = 12.0 * sigma(h) + 1e-12;
    const std::int64_t lo = std::max<std::int64_t>({g.k0, std::int64_t{1},
        static_cast<std::int64_t>(std::floor(p0 * std::exp(-dmax) / g.step))});
    const std::int64_t hi = std::min<std::int64_t>(g.k0 + g.n - 1,
        static_cast<std::int64_t>(std::ceil(p0 * std::exp(dmax) / g.step)));
    lag_k0_ = lo;
    for (std::int64_t k = lo; k <= hi; ++k)
      lag_reach_.push_back(reach(std::log(static_cast<double>(k) * g.step / p0), h) / h);
  }
  now_s_ = std::max(now_s_, t);
  if (refreshed_ && t > refresh_ts_) {
    const double dt = t - refresh_ts_;
    const double f = std::exp(-dt / cfg_.em_tau_s);
    for (auto& v : venues_)
      for (int s = 0; s < 2; ++s) {
        v.den_map[s] += v.map_rate[s] * dt;
        advance(v, s, t);
        v.num_map[s] *= f;
        v.den_map[s] *= f;
        v.num_cont[s] *= f;
        v.den_cont[s] *= f;
        v.events[s] *= f;
      }
  }
  for (auto& v : venues_)
    for (int s = 0; s < 2; ++s) {
      v.snap_anchor[s] = v.anchor[s];
      v.snap_anchor_ts[s] = v.anchor_ts[s];
    }
  refresh_ts_ = t;
  refreshed_ = true;
  next_refresh_ms_ = ts_ms + static_cast<std::int64_t>(cfg_.em_every_s * 1000.0);
}

void Forecaster::end_refresh() {
  if (!cfg_.learn) return;
  for (auto& v : venues_)
    for (int s = 0; s < 2; ++s) {
      v.a[s] = shrink(v.num_map[s], v.den_map[s], v.events[s], cfg_.em_prior_n, cfg_.reach_prior);
      v.b[s] = shrink(v.num_cont[s], v.den_cont[s], v.events[s], cfg_.em_prior_n, cfg_.cont_prior);
      v.c[s] = shrink(v.num_bg[s], v.den_bg[s], v.events[s], cfg_.em_prior_n, cfg_.background_prior);
    }
}

void Forecaster::fill_reach(double step, double horizon_s, std::int64_t k_lo, std::int64_t n, double* out) const {
  const double p0 = anchor_price();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t k = k_lo + i;
    out[i] = (p0 > 0.0 && k > 0) ? reach(std::log(static_cast<double>(k) * step / p0), horizon_s) : 0.0;
  }
}

void Forecaster::add_venue(const PriceGrid& g, const double* map, std::size_t vi, int s, double horizon_s,
                           std::int64_t k_lo, std::int64_t n, const double* reach_w, double* out) const {
  const VenueForecastState& v = venues_[vi];
  // Exposure reached within the horizon: trigger level k reached, reported at k + shift.
  const std::int64_t d = v.shift[s];
  const std::int64_t lo = std::max(k_lo - d, g.k0), hi = std::min(k_lo + n - d, g.k0 + g.n);
  const double p0 = anchor_price();
  for (std::int64_t k = lo; k < hi; ++k) {
    const double m = map[static_cast<std::size_t>(k - g.k0)];
    if (!(m > 0.0)) continue;
    const std::int64_t i = k - k_lo;  // the trigger bin's place in the window, if inside
    const double rw = (i >= 0 && i < n) ? reach_w[i]
                      : (p0 > 0.0 && k > 0 ? reach(std::log(static_cast<double>(k) * g.step / p0), horizon_s) : 0.0);
    out[k + d - k_lo] += v.a[s] * m * rw;
  }
  // Background: spread like the distance-only map.
  const double hz = std::max(horizon_s, 0.0);
  if (v.base[s] > 0.0 && p0 > 0.0) {
    const double base_now = v.base[s] * std::exp(-std::max(0.0, now_s_ - v.base_ts[s]) / cfg_.base_tau_s);
    const double mass = v.c[s] * base_now * (1.0 - std::exp(-hz / cfg_.base_tau_s));
    const double norm = reach_norm(p0, horizon_s, g.step);
    if (mass > 0.0)
      for (std::int64_t i = 0; i < n; ++i) out[i] += mass * reach_w[i] / norm;
  }
  // Continuation: the burst's expected remaining notional over the horizon.
  if (!(v.anchor[s] > 0.0) || !(v.burst[s] > 0.0)) return;
  const double tau = cfg_.burst_tau_s;
  const double burst_now = v.burst[s] * std::exp(-std::max(0.0, now_s_ - v.burst_ts[s]) / tau);
  const double mass = v.b[s] * burst_now * (1.0 - std::exp(-std::max(horizon_s, 0.0) / tau));
  if (!(mass > 0.0)) return;
  const double wide = diffusion_bins(v, s, g.step);
  const auto ka = static_cast<std::int64_t>(std::llround(v.anchor[s] / g.step));
  const auto& kern = v.kernel[s];
  if (wide < 0.5) {
    const std::int64_t i0 = std::max<std::int64_t>(0, ka - kOffsetHalf - k_lo);
    const std::int64_t i1 = std::min<std::int64_t>(n, ka + kOffsetHalf - k_lo + 1);
    for (std::int64_t i = i0; i < i1; ++i)
      out[i] += mass * kern[static_cast<std::size_t>(k_lo + i - ka + kOffsetHalf)];
    return;
  }
  if (wide > 8.0) {
    for (std::int64_t i = 0; i < n; ++i)
      out[i] += mass * cont_kernel(v, s, static_cast<double>(k_lo + i - ka), wide);
    return;
  }
  // Histogram convolved with a discrete Laplace in O(n): y = f + b - x with the
  // forward and backward exponential filters f[i] = x[i] + r f[i-1] (and mirrored).
  const double r = std::exp(-1.0 / wide);
  const double norm = std::tanh(0.5 / wide);
  const std::int64_t sup_lo = ka - kOffsetHalf, sup_hi = ka + kOffsetHalf;  // support of the histogram
  const std::int64_t out_a = k_lo, out_b = k_lo + n - 1;                    // output bins
  // Forward pass from the left edge of the support to the right end of the output.
  double f = 0.0;
  const std::int64_t start = std::min(sup_lo, out_a);
  for (std::int64_t k = start; k <= out_b; ++k) {
    const double x = (k >= sup_lo && k <= sup_hi) ? kern[static_cast<std::size_t>(k - sup_lo)] : 0.0;
    f = x + r * f;
    if (k >= out_a) out[k - k_lo] += mass * norm * f;
    if (k > sup_hi && k < out_a) {  // jump the empty stretch before the output in one step
      f *= std::pow(r, static_cast<double>(out_a - 1 - k));
      k = out_a - 1;
    }
  }
  double bk = 0.0;
  const std::int64_t end = std::max(sup_hi, out_b);
  for (std::int64_t k = end; k >= out_a; --k) {
    const double x = (k >= sup_lo && k <= sup_hi) ? kern[static_cast<std::size_t>(k - sup_lo)] : 0.0;
    bk = x + r * bk;
    // f already counted x once: add the backward part without it
    if (k <= out_b) out[k - k_lo] += mass * norm * (bk - x);
    if (k < sup_lo && k > out_b) {
      bk *= std::pow(r, static_cast<double>(k - (out_b + 1)));
      k = out_b + 1;
    }
  }
}

}  // namespace heatcore
