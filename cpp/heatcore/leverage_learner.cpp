#include "heatcore/leverage_learner.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace heatcore {

namespace {

constexpr double kMsPerHour = 3.6e6;
constexpr int kStrengthGrid = 25;
// The openings book is aged at most this often (aging is O(rows x bins)): the
// openings of the last few minutes are aged a little too much at the next
// aging and older ones a little too little until then, by at most
// 5 min / lifetime (4 % at 125x, a fraction of that on average).
constexpr std::int64_t kAgeEveryMs = 300'000;

void require(bool ok, const char* field, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("learner.") + field + ": " + what);
}

}  // namespace

void LearnerConfig::validate() const {
  require(std::isfinite(half_life_hours) && half_life_hours > 0.0, "half_life_hours", "must be > 0");
  require(std::isfinite(lifetime_hours) && lifetime_hours > 0.0, "lifetime_hours", "must be > 0");
  require(std::isfinite(lifetime_exponent) && lifetime_exponent >= 0.0 && lifetime_exponent <= 4.0,
          "lifetime_exponent", "must be in [0, 4]");
  require(buffer_events >= 1 && buffer_events <= 1'000'000, "buffer_events", "must be in [1, 1e6]");
  require(refresh_events >= 1, "refresh_events", "must be >= 1");
  require(std::isfinite(refresh_hours) && refresh_hours > 0.0, "refresh_hours", "must be > 0");
  require(em_iterations >= 1 && em_iterations <= 100, "em_iterations", "must be in [1, 100]");
  require(std::isfinite(kernel_bins) && kernel_bins >= 0.0, "kernel_bins", "must be >= 0");
  require(std::isfinite(kernel_frac) && kernel_frac >= 0.0 && kernel_frac < 0.5, "kernel_frac",
          "must be in [0, 0.5)");
  require(kernel_bins > 0.0 || kernel_frac > 0.0, "kernel_bins", "the kernel must have a width");
  require(std::isfinite(crossing_window_s) && crossing_window_s >= 0.0, "crossing_window_s", "must be >= 0");
  require(crossing_records >= 1 && crossing_records <= 100'000, "crossing_records", "must be in [1, 1e5]");
  require(std::isfinite(tier_smoothing) && tier_smoothing >= 0.0 && tier_smoothing <= 1.0, "tier_smoothing",
          "must be in [0, 1]");
  require(std::isfinite(size_cap) && size_cap >= 1.0, "size_cap", "must be >= 1");
  require(sample_window_ms >= 0, "sample_window_ms", "must be >= 0");
  require(std::isfinite(prior_min) && prior_min > 0.0, "prior_min", "must be > 0");
  require(std::isfinite(prior_max) && prior_max >= prior_min, "prior_max", "must be >= prior_min");
  require(std::isfinite(loglik_floor) && loglik_floor > 0.0 && loglik_floor < 1.0, "loglik_floor",
          "must be in (0, 1)");
}

void solve_rates(std::size_t count, const double* a, const double* c, const double* b, const double* n,
                 double total, double* out) {
  // sum_t u_t n_t is decreasing in lambda on (lambda_min, inf), from +inf to 0,
  // so bisection finds the unique root. Tiers with no book (n_t = 0) do not
  // enter the constraint and keep their plain Poisson rate.
  double mass = 0.0, lam_min = -HUGE_VAL;
  bool any = false;
  for (std::size_t t = 0; t < count; ++t) {
    const double s = a[t] + b[t];
    if (s > 0.0 && n[t] > 0.0) {
      mass += s;
      lam_min = std::max(lam_min, -c[t] / n[t]);
      any = true;
    }
  }
  if (!any || !(total > 0.0) || !std::isfinite(mass)) {
    for (std::size_t t = 0; t < count; ++t) out[t] = c[t] > 0.0 ? (a[t] + b[t]) / c[t] : 0.0;
    return;
  }
  auto booked = [&](double lam) {
    double s = 0.0;
    for (std::size_t t = 0; t < count; ++t) {
      const double num = a[t] + b[t];
      if (num > 0.0 && n[t] > 0.0) s += num * n[t] / (c[t] + lam * n[t]);
    }
    return s;
  };
  double lo = lam_min, hi = mass / total;   // booked(hi) <= mass / hi = total
  for (int i = 0; i < 300; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (!(mid > lo && mid < hi)) break;
    if (booked(mid) > total) lo = mid;
    else hi = mid;
  }
  for (std::size_t t = 0; t < count; ++t) {
    const double num = a[t] + b[t];
    const double den = c[t] + hi * n[t];
    out[t] = num > 0.0 && den > 0.0 ? num / den : 0.0;
  }
}

LeverageLearner::LeverageLearner(const LearnerConfig& cfg, std::vector<double> prior,
                                 const std::vector<double>& tiers, double cross_share)
    : cfg_(cfg), cross_(std::clamp(cross_share, 0.0, 1.0)), prior_(std::move(prior)) {
  cfg_.validate();
  const std::size_t t = prior_.size();
  if (tiers.size() != t) throw std::invalid_argument("learner: one prior weight per tier is required");
  life_h_.resize(t);
  for (std::size_t i = 0; i < t; ++i)
    life_h_[i] = cfg_.lifetime_hours * std::pow(tiers[i] / 10.0, -cfg_.lifetime_exponent);
  age_.assign(t, 1.0);
  tau_ms_ = cfg_.half_life_hours * kMsPerHour / std::log(2.0);

  mix_ = oi_mix_ = prior_;
  u_.assign(t, 0.0);
  c_.assign(t, 0.0);
  arch_.assign(t, 0.0);
  pre_.assign(t, 0.0);
  nbar_.assign(t, 0.0);
  snap_c_.assign(2 * t, 0.0);
  snap_all_.assign(2 * t, 0.0);
  snap_d_.assign(t, 0.0);
  const std::size_t k = cfg_.crossing_records;
  x_ts_.assign(k, 0);
  x_lo_.assign(k, 0.0);
  x_hi_.assign(k, 0.0);
  x_usd_.assign(k * t, 0.0);
  x_all_.assign(k * t, 0.0);
  const std::size_t b = cfg_.buffer_events;
  b_ts_.assign(b, 0);
  b_q_.assign(b, 0.0);
  b_e_.assign(b * t, 0.0);
  b_r_.assign(b * t, 0.0);
  for (auto* v : {&er_, &seed_q_, &e_, &a_, &n_, &c_units_, &a_units_, &sm_a_, &sm_c_, &bprior_, &wa_, &wc_}) v->assign(t, 0.0);
}

void LeverageLearner::decay_to(std::int64_t ts) noexcept {
  if (!acc_started_) {
    acc_started_ = true;
    acc_ts_ = ts;
    return;
  }
  if (ts <= acc_ts_) return;
  const double f = std::exp(-static_cast<double>(ts - acc_ts_) / tau_ms_);
  for (std::size_t t = 0; t < tiers(); ++t) {
    c_[t] *= f;
    arch_[t] *= f;
  }
  s1_ *= f;
  s2_ *= f * f;
  sn_ *= f;
  acc_ts_ = ts;
}

LeverageLearner::Openings LeverageLearner::on_open_interest(std::int64_t ts, double price, double oi_usd) {
  oi_usd_ = oi_usd;
  if (!oi_seen_) {
    // The book that predates the first reading: a unit rate's steady state
    // (each tier's lifetime of openings), laid where the engine seeds the
    // exposure book. It counts toward open interest and explains the
    // liquidations it produces (which would otherwise be pinned on the recent
    // openings nearby), but it is not evidence about the openings: its vintage
    // is unknown and may predate a change of regime.
    oi_seen_ = true;
    last_oi_ts_ = last_age_ts_ = ts;
    for (std::size_t t = 0; t < tiers(); ++t) seed_q_[t] = life_h_[t] / price;
    return {nullptr, 1.0, 0.0, seed_q_.data()};
  }
  if (ts <= last_oi_ts_) return {nullptr, 1.0, 0.0, nullptr};
  const double hours = static_cast<double>(ts - last_oi_ts_) / kMsPerHour;
  last_oi_ts_ = ts;
  for (std::size_t t = 0; t < tiers(); ++t) pre_[t] *= std::exp(-hours / life_h_[t]);
  // Openings since the last reading, at unit rate (1 USD per hour).
  if (ts - last_age_ts_ < kAgeEveryMs) return {nullptr, 1.0, hours / price, nullptr};
  // Aging since the last aging; the recency-weighted rows also fade with the
  // openings' age.
  const double aged_h = static_cast<double>(ts - last_age_ts_) / kMsPerHour;
  last_age_ts_ = ts;
  for (std::size_t t = 0; t < tiers(); ++t) age_[t] = std::exp(-aged_h / life_h_[t]);
  const double recent = std::exp(-aged_h * kMsPerHour / tau_ms_);
  return {age_.data(), recent, hours / price, nullptr};
}

void LeverageLearner::on_cross(std::int64_t ts, double p_lo, double p_hi, const double* consumed_usd,
                               const double* book_consumed, const double* book_totals) {
  const std::size_t nt = tiers();
  const std::size_t slot = (x_head_ + x_count_) % cfg_.crossing_records;
  double* row = x_usd_.data() + slot * nt;
  double* all = x_all_.data() + slot * nt;
  double sum = 0.0, sum_all = 0.0;
  for (std::size_t t = 0; t < nt; ++t) {
    // Deltas of the book's cumulative counters (isolated and cross rows, mixed
    // by the documented cross share); negative would mean a reset. The
    // recency-weighted rows are the evidence, all vintages what was crossed.
    const double iso = std::max(0.0, consumed_usd[2 * nt + t] - snap_c_[t]);
    const double crs = std::max(0.0, consumed_usd[3 * nt + t] - snap_c_[nt + t]);
    snap_c_[t] = consumed_usd[2 * nt + t];
    snap_c_[nt + t] = consumed_usd[3 * nt + t];
    row[t] = (1.0 - cross_) * iso + cross_ * crs;
    sum += row[t];
    const double iso_all = std::max(0.0, consumed_usd[t] - snap_all_[t]);
    const double crs_all = std::max(0.0, consumed_usd[nt + t] - snap_all_[nt + t]);
    snap_all_[t] = consumed_usd[t];
    snap_all_[nt + t] = consumed_usd[nt + t];
    all[t] = (1.0 - cross_) * iso_all + cross_ * crs_all;
    sum_all += all[t];
    // The older book sits where the exposure book does: it loses the share of
    // the tier that the exposure book lost on this move.
    const double gone = std::max(0.0, book_consumed[t] - snap_d_[t]);
    snap_d_[t] = book_consumed[t];
    if (gone > 0.0) pre_[t] *= std::clamp(book_totals[t] / (book_totals[t] + gone), 0.0, 1.0);
  }
  if (!(sum_all > 0.0) || !std::isfinite(sum_all) || !std::isfinite(sum)) return;
  decay_to(ts);
  for (std::size_t t = 0; t < nt; ++t) c_[t] += row[t];
  x_ts_[slot] = ts;
  x_lo_[slot] = p_lo;
  x_hi_[slot] = p_hi;
  if (x_count_ < cfg_.crossing_records) ++x_count_;
  else x_head_ = (x_head_ + 1) % cfg_.crossing_records;
}

void LeverageLearner::evict_oldest() noexcept {
  const std::size_t nt = tiers();
  const std::size_t i = b_head_;
  const double age = static_cast<double>(std::max<std::int64_t>(0, acc_ts_ - b_ts_[i]));
  const double weight = b_q_[i] * std::exp(-age / tau_ms_);
  const double* e = b_e_.data() + i * nt;
  const double* er = b_r_.data() + i * nt;
  double z = 0.0;
  for (std::size_t t = 0; t < nt; ++t) z += mix_[t] * e[t];
  if (z > 0.0)
    for (std::size_t t = 0; t < nt; ++t) arch_[t] += weight * mix_[t] * er[t] / z;
  b_head_ = (b_head_ + 1) % cfg_.buffer_events;
  --b_count_;
}

bool LeverageLearner::on_liquidation(std::int64_t ts, double price, double notional_usd, bool sampled,
                                     const double* openings, const double* scale, double step,
                                     double k_lo_bins, double k_hi_bins) {
  const std::size_t nt = tiers();
  ++diag_.n_events;
  for (std::size_t t = 0; t < nt; ++t) {
    e_[t] = ((1.0 - cross_) * openings[t] + cross_ * openings[nt + t]) * price;
    er_[t] = ((1.0 - cross_) * openings[2 * nt + t] + cross_ * openings[3 * nt + t]) * price;
  }
  // Openings crossed inside the kernel window recently, spread uniformly over
  // the move's range; and, for sampled feeds, the expected liquidations in the
  // event's sampling window.
  const auto window_ms = static_cast<std::int64_t>(cfg_.crossing_window_s * 1000.0);
  double expected_in_window = 0.0;
  for (std::size_t j = 0; j < x_count_; ++j) {
    const std::size_t r = (x_head_ + x_count_ - 1 - j) % cfg_.crossing_records;
    if (ts - x_ts_[r] > window_ms) break;
    const double* row = x_usd_.data() + r * nt;
    const double* all = x_all_.data() + r * nt;
    const double lo = x_lo_[r], hi = x_hi_[r];
    for (std::size_t t = 0; t < nt; ++t) {
      if (!(all[t] > 0.0)) continue;
      const double k_lo = k_lo_bins * step * scale[t], k_hi = k_hi_bins * step * scale[t];
      double frac;
      if (hi > lo) frac = std::max(0.0, std::min(hi, k_hi) - std::max(lo, k_lo)) / (hi - lo);
      else frac = (lo >= k_lo && lo <= k_hi) ? 1.0 : 0.0;
      e_[t] += frac * all[t];
      er_[t] += frac * row[t];
    }
    if (sampled && ts - x_ts_[r] <= cfg_.sample_window_ms)
      for (std::size_t t = 0; t < nt; ++t) expected_in_window += u_[t] * all[t];
  }
  double z = 0.0;
  for (std::size_t t = 0; t < nt; ++t) z += mix_[t] * e_[t];
  if (!(z > 0.0) || !std::isfinite(z)) {
    ++diag_.preexisting;
    return false;
  }
  // Weight: the notional, clipped at size_cap times the running typical size
  // (bogus sizes). A sampled feed keeps at most one event per window, so its
  // event stands for the window's liquidations: it weighs at least the
  // model's expectation there (the E-step for the censored events).
  double q = notional_usd;
  const double lq = std::log(notional_usd);
  if (size_n_ >= 10) {
    const double cap = cfg_.size_cap * std::exp(log_size_);
    if (q > cap) {
      q = cap;
      ++diag_.clipped;
    }
    log_size_ += 0.05 * std::clamp(lq - log_size_, -2.0, 2.0);
  } else {
    log_size_ = size_n_ == 0 ? lq : log_size_ + (lq - log_size_) / static_cast<double>(size_n_ + 1);
  }
  ++size_n_;
  if (sampled) {
    ++diag_.sampled;
    q = std::max(q, std::min(expected_in_window, cfg_.size_cap * std::exp(log_size_)));
  }
  if (!std::isfinite(q) || !(q > 0.0)) return false;
  decay_to(ts);
  s1_ += q;
  s2_ += q * q;
  sn_ += 1.0;
  if (b_count_ == cfg_.buffer_events) evict_oldest();
  const std::size_t i = (b_head_ + b_count_) % cfg_.buffer_events;
  b_ts_[i] = ts;
  b_q_[i] = q;
  std::copy(e_.begin(), e_.end(), b_e_.begin() + static_cast<std::ptrdiff_t>(i * nt));
  std::copy(er_.begin(), er_.end(), b_r_.begin() + static_cast<std::ptrdiff_t>(i * nt));
  ++b_count_;
  ++since_refresh_;
  return true;
}

bool LeverageLearner::refresh_due(std::int64_t ts) const noexcept {
  if (since_refresh_ == 0) return false;
  return since_refresh_ >= cfg_.refresh_events ||
         static_cast<double>(ts - last_refresh_ts_) >= cfg_.refresh_hours * kMsPerHour;
}

void LeverageLearner::smooth(double* a, double* c) noexcept {
  // Neighbouring tiers' exposures overlap near almost every event, so the
  // likelihood is nearly flat along "move weight from 40x to 50x" and the raw
  // EM drifts to spiky mixes. Lending each tier a share of its neighbours'
  // evidence (attributed and crossed alike, so a rate stays a rate) is a
  // smoothness prior over the support. Only tested, allowed tiers take part:
  // a tier price never crossed must stay untested, and a tier the venue does
  // not allow (prior 0) neither lends nor borrows.
  const std::size_t nt = tiers();
  const double h = 0.5 * cfg_.tier_smoothing;
  if (h <= 0.0 || nt < 2) return;
  auto joins = [&](std::size_t t) { return c[t] > 0.0 && prior_[t] > 0.0; };
  for (std::size_t t = 0; t < nt; ++t) {
    double sa = a[t], sc = c[t];
    if (joins(t)) {
      if (t > 0 && joins(t - 1)) {
        sa += h * a[t - 1];
        sc += h * c[t - 1];
      }
      if (t + 1 < nt && joins(t + 1)) {
        sa += h * a[t + 1];
        sc += h * c[t + 1];
      }
    }
    sm_a_[t] = sa;
    sm_c_[t] = sc;
  }
  std::copy(sm_a_.begin(), sm_a_.end(), a);
  std::copy(sm_c_.begin(), sm_c_.end(), c);
}

double LeverageLearner::pick_strength(const double* a, const double* c, const double* p) const {
  // Empirical Bayes: maximise the Gamma-Poisson marginal likelihood of the
  // attributed events a_t given exposures c_t (expected events at the prior's
  // rate) over a log grid of strengths. Untested tiers carry no information.
  const std::size_t nt = tiers();
  double best = cfg_.prior_max, best_ll = -HUGE_VAL;
  bool informative = false;
  for (int g = 0; g < kStrengthGrid; ++g) {
    const double k = cfg_.prior_min *
                     std::pow(cfg_.prior_max / cfg_.prior_min, static_cast<double>(g) / (kStrengthGrid - 1));
    double ll = 0.0;
    for (std::size_t t = 0; t < nt; ++t) {
      if (!(p[t] > 0.0) || !(c[t] > 1e-9)) continue;
      informative = true;
      const double alpha = k * p[t];
      ll += std::lgamma(a[t] + alpha) - std::lgamma(alpha) + alpha * std::log(k / (k + c[t])) +
            a[t] * std::log(c[t] / (k + c[t]));
    }
    if (ll > best_ll) {
      best_ll = ll;
      best = k;
    }
  }
  return informative ? best : cfg_.prior_max;
}

void LeverageLearner::refresh(std::int64_t ts, const double* totals, double price) {
  if (!oi_seen_ || !(oi_usd_ > 0.0) || !(price > 0.0)) return;
  const std::size_t nt = tiers();
  decay_to(ts);
  unit_ = (sn_ > 0.0 && s1_ > 0.0) ? s1_ / sn_ : 1.0;
  double pn = 0.0;
  for (std::size_t t = 0; t < nt; ++t) {
    // surviving unit mass, hours of openings
    n_[t] = ((1.0 - cross_) * totals[t] + cross_ * totals[nt + t]) * price + pre_[t];
    pn += prior_[t] * n_[t];
  }
  // The opening rate the prior mix implies for this open interest (USD per hour).
  gbar_ = pn > 0.0 ? oi_usd_ / pn : 0.0;
  if (!(gbar_ > 0.0)) return;
  for (int it = 0; it < cfg_.em_iterations; ++it) {
    std::copy(arch_.begin(), arch_.end(), a_.begin());
    for (std::size_t j = 0; j < b_count_; ++j) {
      const std::size_t i = (b_head_ + j) % cfg_.buffer_events;
      const double age = static_cast<double>(std::max<std::int64_t>(0, acc_ts_ - b_ts_[i]));
      const double* e = b_e_.data() + i * nt;
      const double* er = b_r_.data() + i * nt;
      double z = 0.0;
      for (std::size_t t = 0; t < nt; ++t) z += (u_[t] > 0.0 ? u_[t] : prior_[t]) * e[t];
      if (!(z > 0.0)) continue;
      // Responsibility from every vintage near the event; only the recent
      // openings' share of it is evidence about the current rates.
      const double s = b_q_[i] * std::exp(-age / tau_ms_) / z;
      for (std::size_t t = 0; t < nt; ++t) a_[t] += s * (u_[t] > 0.0 ? u_[t] : prior_[t]) * er[t];
    }
    // Everything in expected events at the prior's rate: a in events, c scaled by gbar / U.
    for (std::size_t t = 0; t < nt; ++t) {
      a_units_[t] = a_[t] / unit_;
      c_units_[t] = c_[t] * gbar_ / unit_;
      wa_[t] = a_units_[t];
      wc_[t] = c_units_[t];
    }
    smooth(wa_.data(), wc_.data());
    for (std::size_t t = 0; t < nt; ++t)
      if (!(prior_[t] > 0.0)) wa_[t] = 0.0;   // a tier the venue does not allow stays empty
    kappa_ = pick_strength(wa_.data(), wc_.data(), prior_.data());
    // Back to rates. The Gamma(kappa p_t, kappa / gbar) prior has mean p_t gbar
    // (the prior mix at the rate that fills the OI) and adds kappa p_t U
    // attributed and kappa U / gbar crossed (both in expected events):
    //   u_t = (A_t + kappa p_t U) / (C_t + kappa U / gbar + lambda N_t), sum u N = OI.
    // Without evidence lambda = 0 and the openings mix is the prior.
    for (std::size_t t = 0; t < nt; ++t) {
      wa_[t] *= unit_;
      wc_[t] = wc_[t] * unit_ / gbar_ + kappa_ * unit_ / gbar_;
      bprior_[t] = kappa_ * prior_[t] * unit_;
    }
    solve_rates(nt, wa_.data(), wc_.data(), bprior_.data(), n_.data(), oi_usd_, u_.data());
  }
  // The map weighs each tier by its share of open interest, u_t N_t / OI. A
  // tier whose recent openings were all just crossed has N_t ~ 0 for a moment
  // while the exposure book has already refilled it at the new price, so the
  // map uses N_t averaged over a quarter of the position lifetime.
  const double w_avg = nbar_ts_ == 0 ? 1.0
      : 1.0 - std::exp(-static_cast<double>(std::max<std::int64_t>(0, ts - nbar_ts_)) /
                       (0.25 * cfg_.lifetime_hours * kMsPerHour));
  nbar_ts_ = ts;
  double su = 0.0, so = 0.0;
  for (std::size_t t = 0; t < nt; ++t) {
    if (!std::isfinite(u_[t]) || u_[t] < 0.0) u_[t] = 0.0;
    nbar_[t] += w_avg * (n_[t] - nbar_[t]);
    su += u_[t];
    so += u_[t] * nbar_[t];
  }
  if (su > 0.0 && so > 0.0) {
    for (std::size_t t = 0; t < nt; ++t) {
      mix_[t] = u_[t] / su;
      oi_mix_[t] = u_[t] * nbar_[t] / so;
    }
  }
  since_refresh_ = 0;
  last_refresh_ts_ = ts;
  ++diag_.refreshes;
}

void LeverageLearner::set_mix(const std::vector<double>& w) {
  if (w.size() != tiers()) throw std::invalid_argument("mix: expected one weight per tier");
  oi_mix_ = w;
  mix_ = w;
  std::fill(u_.begin(), u_.end(), 0.0);
}

bool LeverageLearner::tested(std::size_t t) const noexcept {
  return c_units_[t] * std::max(mix_[t], prior_[t]) >= 1.0;
}

LeverageLearner::Diagnostics LeverageLearner::diagnostics() const {
  Diagnostics d = diag_;
  d.effective_events = s2_ > 0.0 ? s1_ * s1_ / s2_ : 0.0;
  d.prior_strength = kappa_;
  d.mean_event_usd = unit_;
  double su = 0.0;
  for (double u : u_) su += u;
  d.opening_rate_usd_h = su;
  d.loglik_sum = loglik_sum_;
  d.loglik_n = loglik_n_;
  return d;
}

}  // namespace heatcore
