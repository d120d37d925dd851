#include "heatcore/calibrator.hpp"

#include "heatcore/serialize.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace heatcore {

namespace {

bool is_bankruptcy_like(PriceKind k) { return k == PriceKind::bankruptcy || k == PriceKind::order; }

constexpr std::size_t kKinds = 6;

}  // namespace

const char* price_kind_name(PriceKind k) noexcept {
  switch (k) {
    case PriceKind::bankruptcy: return "bankruptcy";
    case PriceKind::order: return "order";
    case PriceKind::fill: return "fill";
    case PriceKind::trade: return "trade";
    case PriceKind::mark: return "mark";
    default: return "unknown";
  }
}

const char* rate_source_name(RateSource s) noexcept {
  switch (s) {
    case RateSource::bankruptcy_offset: return "bankruptcy_offset";
    case RateSource::convention_departs: return "convention_departs";
    default: return "prior";
  }
}

void CalibratorConfig::validate() const {
  if (fresh_ms < 0) throw std::invalid_argument("calibrator: fresh_ms must be >= 0");
  if (!(huber_c > 0.5 && huber_c < 10.0)) throw std::invalid_argument("calibrator: huber_c must be in (0.5, 10)");
  if (!(sigma_floor > 0.0 && sigma_floor < 0.01)) throw std::invalid_argument("calibrator: sigma_floor must be in (0, 0.01)");
  if (!(systematic_sd >= 0.0 && systematic_sd < 0.01)) throw std::invalid_argument("calibrator: systematic_sd must be in [0, 0.01)");
  if (!(max_n_eff >= RobustLocation::kWarm)) throw std::invalid_argument("calibrator: max_n_eff too small");
  if (!(scale_min > 0.0 && scale_min < 1.0 && scale_max > 1.0 && std::isfinite(scale_max)))
    throw std::invalid_argument("calibrator: need 0 < scale_min < 1 < scale_max");
  if (!(scale_prior_sd > 0.0)) throw std::invalid_argument("calibrator: scale_prior_sd must be > 0");
  if (!(ref_leverage >= 1.0)) throw std::invalid_argument("calibrator: ref_leverage must be >= 1");
  if (!(apply_rel >= 0.0)) throw std::invalid_argument("calibrator: apply_rel must be >= 0");
  if (!(depart_z > 0.0)) throw std::invalid_argument("calibrator: depart_z must be > 0");
}

// ---- RobustLocation ----------------------------------------------------------

double RobustLocation::spread_of(const double* v, int n, double floor) {
  // 1.4826 * MAD: the normal-consistent robust spread; scratch on the stack.
  std::array<double, kRing> buf{};
  std::copy_n(v, n, buf.begin());
  const double med = median_n(buf.data(), n);
  for (int i = 0; i < n; ++i) buf[static_cast<std::size_t>(i)] = std::abs(v[i] - med);
  return std::max(1.4826 * median_n(buf.data(), n), floor);
}

double RobustLocation::median_n(double* v, int n) {
  double* mid = v + n / 2;
  std::nth_element(v, mid, v + n);
  double m = *mid;
  if (n % 2 == 0) m = 0.5 * (m + *std::max_element(v, mid));
  return m;
}

void RobustLocation::add(double x, double max_n, double c, double sigma_floor, std::int64_t group) {
  ++count_;
  sigma_dirty_ = true;
  sigma_floor_ = sigma_floor;
  // The spread comes from the recent residuals about their own median, not about
  // the estimate: a biased estimate then shows as a run of one-sided clips (and
  // restarts) instead of inflating the spread until nothing is clipped.
  // Recomputed every kSpreadEvery observations (it moves slowly; the MAD is the
  // costliest step of the update).
  if (nring_ >= kWarm && (nring_ < kRing || count_ % kSpreadEvery == 0))
    sd_ = spread_of(ring_.data(), nring_, sigma_floor);
  const double sd = nring_ >= kWarm ? sd_ : 0.0;
  ring_[ring_pos_] = x;
  ring_pos_ = (ring_pos_ + 1) % kRing;
  nring_ = std::min(nring_ + 1, kRing);
  if (nw_ < kWarm) {
    warm_[static_cast<std::size_t>(nw_++)] = x;
    if (nw_ == kWarm) {
      // Start the M-estimate from the median of the first observations.
      std::array<double, kRing> buf{};
      std::copy_n(warm_.begin(), kWarm, buf.begin());
      mu_ = median_n(buf.data(), kWarm);
      n_ = kWarm;
    }
    return;
  }
  const double r = x - mu_;
  const double psi = std::clamp(r, -c * sd, c * sd);
  if (psi != r) {
    ++clipped_;
    // A run of clipped residuals on one side is a level shift (a venue changed its
    // tiers or its reports, or the start was contaminated), not outliers: start
    // over from the new level.
    // Residuals against the mark the run last counted add nothing to it.
    const int dir = r > 0 ? 1 : -1;
    if (run_ != 0 && (run_ > 0) == (r > 0)) {
      if (group != run_group_) run_ += dir;
    } else {
      run_ = dir;
    }
    run_group_ = group;
    if (std::abs(run_) >= kShiftRun) {
      ++restarts_;
      run_ = 0;
      nw_ = 0;
      // Restart from the run itself: the newest kWarm residuals (all in the ring).
      for (int i = kWarm; i >= 1; --i) {
        warm_[static_cast<std::size_t>(kWarm - i)] =
            ring_[static_cast<std::size_t>((ring_pos_ + kRing - i) % kRing)];
      }
      nw_ = kWarm;
      std::array<double, kRing> buf{};
      std::copy_n(warm_.begin(), kWarm, buf.begin());
      mu_ = median_n(buf.data(), kWarm);
      n_ = kWarm;
      return;
    }
  } else {
    run_ = 0;
  }
  n_ = std::min(n_ + 1.0, max_n);
  mu_ += psi / n_;
}

double RobustLocation::mean() const noexcept {
  if (nw_ == 0) return 0.0;
  if (nw_ < kWarm) {
    std::array<double, kRing> buf{};
    std::copy_n(warm_.begin(), nw_, buf.begin());
    return median_n(buf.data(), nw_);
  }
  return mu_;
}

double RobustLocation::sigma() const noexcept {
  if (!sigma_dirty_) return sigma_cache_;
  double v;
  if (nring_ == 0) v = 0.0;
  else if (nring_ < 3) v = 5.0 * sigma_floor_;  // a handful of events is no precision
  else v = std::max(spread_of(ring_.data(), nring_, sigma_floor_), nring_ < kWarm ? 5.0 * sigma_floor_ : 0.0);
  sigma_cache_ = v;
  sigma_dirty_ = false;
  return v;
}

// ---- Calibrator ----------------------------------------------------------------

Calibrator::Calibrator(const CalibratorConfig& cfg, const std::vector<Mechanics>& mechanics,
                       const std::vector<PriceKind>& documented_kind)
    : mech_(mechanics), doc_kind_(documented_kind) {
  if (doc_kind_.size() != mech_.size()) throw std::invalid_argument("calibrator: one documented kind per venue");
  mark_ts_.assign(mech_.size(), std::numeric_limits<std::int64_t>::min());
  mark_px_.assign(mech_.size(), 0.0);
  has_feed_.assign(mech_.size(), 1);
  reset(cfg);
}

void Calibrator::reset(const CalibratorConfig& cfg) {
  cfg.validate();
  cfg_ = cfg;
  state_.assign(mech_.size() * 2, CalibSide{});
  for (std::size_t slot = 0; slot < mech_.size(); ++slot) {
    for (Side side : {Side::long_, Side::short_}) {
      CalibSide& st = at(slot, side);
      const double bk = bankruptcy_offset(slot, side, 1.0);
      // Documented offsets. A bankruptcy or order report sits at the bankruptcy
      // price (its spread is the rate's uncertainty); a fill lies somewhere between
      // the trigger and the bankruptcy price; a trade print or a mark at the trigger.
      for (std::size_t k = 0; k < kKinds; ++k) {
        const auto kind = static_cast<PriceKind>(k);
        double mu = 0.0, sd = 5e-4;
        if (is_bankruptcy_like(kind)) {
          mu = bk;
          sd = std::max(std::abs(bk) * cfg_.scale_prior_sd, 1e-4);
        } else if (kind == PriceKind::fill) {
          mu = 0.5 * bk;
          sd = std::max(0.5 * std::abs(bk), 1e-4);
        } else if (kind == PriceKind::unknown) {
          sd = std::max(std::abs(bk), 5e-4);
        }
        st.offset_prior[k] = mu;
        st.offset_prior_sd[k] = sd;
      }
      st.scale_sd = cfg_.scale_prior_sd;  // in ln(scale)
    }
  }
}

double Calibrator::bankruptcy_offset(std::size_t slot, Side side, double scale, double leverage) const {
  const Mechanics& m = mech_.at(slot);
  const double lev = std::min(leverage > 0.0 ? leverage : cfg_.ref_leverage, m.max_leverage);
  const double lp = m.liquidation_ratio(side, lev, scale);
  const double bk = Mechanics::bankruptcy_ratio(side, lev, m.inverse);
  return std::log(bk / lp);
}

double Calibrator::documented_offset(std::size_t slot, Side side, PriceKind kind, double scale) const {
  if (is_bankruptcy_like(kind)) return bankruptcy_offset(slot, side, scale);
  return at(slot, side).offset_prior[static_cast<std::size_t>(kind)];
}

bool Calibrator::observe(std::size_t slot, Side side, PriceKind kind, double reported, double notional_usd,
                         std::int64_t ts) noexcept {
  if (!has_feed_[slot]) return false;  // no public feed: the priors stay
  CalibSide& st = at(slot, side);
  if (static_cast<std::size_t>(kind) >= kKinds) kind = PriceKind::unknown;
  if (kind == PriceKind::unknown) kind = doc_kind_[slot];
  // Size: every event counts, with or without a trigger reference.
  if (notional_usd > 0.0 && std::isfinite(notional_usd)) {
    const double lq = std::log(notional_usd);
    st.lq_n = std::min(st.lq_n + 1.0, cfg_.max_n_eff);
    const double d = lq - st.lq_mean;
    st.lq_mean += d / st.lq_n;
    st.lq_var += (d * (lq - st.lq_mean) - st.lq_var) / st.lq_n;
    st.q_max = std::max(st.q_max, notional_usd);
  }
  // No mark yet: its time is a sentinel, so the age must not be computed (overflow).
  if (mark_px_[slot] <= 0.0) {
    ++st.no_reference;
    return false;
  }
  const std::int64_t age = ts - mark_ts_[slot];
  if (age < 0 || age > cfg_.fresh_ms) {
    ++st.no_reference;
    return false;
  }
  const double resid = std::log(reported / mark_px_[slot]);
  if (!std::isfinite(resid)) return false;
  if (st.ref_mark_used > 0 && mark_ts_[slot] == st.ref_mark_ts) {
    if (st.ref_mark_used >= kPerMark) {
      ++st.no_reference;
      return false;
    }
    ++st.ref_mark_used;
  } else {
    st.ref_mark_ts = mark_ts_[slot];
    st.ref_mark_used = 1;
  }
  st.offset[static_cast<std::size_t>(kind)].add(resid, cfg_.max_n_eff, cfg_.huber_c, cfg_.sigma_floor,
                                                mark_ts_[slot]);
  ++st.used;
  if (!is_bankruptcy_like(kind)) return false;
  if (++st.since_check < cfg_.apply_every && st.offset[static_cast<std::size_t>(kind)].n_eff() > 2 * RobustLocation::kWarm)
    return false;
  st.since_check = 0;
  refresh_scale(slot, side);
  return std::abs(placement_scale(slot, side) / st.applied_scale - 1.0) > cfg_.apply_rel;
}

Estimate Calibrator::offset(std::size_t slot, Side side, PriceKind kind) const {
  const CalibSide& st = at(slot, side);
  if (static_cast<std::size_t>(kind) >= kKinds) kind = PriceKind::unknown;
  if (kind == PriceKind::unknown) kind = doc_kind_.at(slot);
  const auto k = static_cast<std::size_t>(kind);
  const RobustLocation& loc = st.offset[k];
  Estimate e;
  e.prior = st.offset_prior[k];
  e.prior_sd = st.offset_prior_sd[k];
  if (loc.empty()) {
    e.value = e.prior;
    e.sd = e.prior_sd;
    return e;
  }
  const double n = loc.n_eff();
  const double var_d = loc.sigma() * loc.sigma() / n + cfg_.systematic_sd * cfg_.systematic_sd;
  const double var_p = e.prior_sd * e.prior_sd;
  e.value = (loc.mean() / var_d + e.prior / var_p) / (1.0 / var_d + 1.0 / var_p);
  e.sd = std::sqrt(1.0 / (1.0 / var_d + 1.0 / var_p));
  e.n_eff = n;
  e.departs = std::abs(loc.mean() - e.prior) > cfg_.depart_z * std::sqrt(var_d + var_p);
  return e;
}

void Calibrator::refresh_scale(std::size_t slot, Side side) {
  CalibSide& st = at(slot, side);
  // The bankruptcy-like stream with the most evidence measures the rate.
  const RobustLocation* best = nullptr;
  for (PriceKind k : {PriceKind::bankruptcy, PriceKind::order}) {
    const RobustLocation& loc = st.offset[static_cast<std::size_t>(k)];
    if (!loc.empty() && (best == nullptr || loc.n_eff() > best->n_eff())) best = &loc;
  }
  // A handful of events is not evidence on the rate: one stale mark would move
  // every level of the venue.
  if (best == nullptr || best->n_eff() < RobustLocation::kWarm) return;
  const double target = best->mean();
  const double lo_off = bankruptcy_offset(slot, side, cfg_.scale_min);
  const double hi_off = bankruptcy_offset(slot, side, cfg_.scale_max);
  // The offset is monotone in the scale (long: decreasing, short: increasing).
  const bool inside = (target - lo_off) * (target - hi_off) <= 0.0;
  if (!inside) {
    st.scale = 1.0;
    st.scale_sd = cfg_.scale_prior_sd;
    st.scale_n = 0.0;
    st.scale_source = RateSource::convention_departs;
    return;
  }
  double a = std::log(cfg_.scale_min), b = std::log(cfg_.scale_max);
  const double fa = lo_off - target;
  for (int i = 0; i < 60 && b - a > 1e-10; ++i) {
    const double mid = 0.5 * (a + b);
    const double fm = bankruptcy_offset(slot, side, std::exp(mid)) - target;
    if ((fm < 0.0) == (fa < 0.0)) a = mid;
    else b = mid;
  }
  const double ls = 0.5 * (a + b);
  // Delta method: sd of ln(scale) from the offset's standard error.
  const double h = 1e-4;
  const double slope = (bankruptcy_offset(slot, side, std::exp(ls + h)) -
                        bankruptcy_offset(slot, side, std::exp(ls - h))) / (2.0 * h);
  // Where the offset depends on leverage (inverse and mm-at-entry formulas), not
  // knowing the leverage of the liquidated positions is a systematic uncertainty:
  // the spread of the offset between 10x and the venue's maximum counts as +-2 sd.
  const double lev_sd = std::abs(bankruptcy_offset(slot, side, std::exp(ls), 10.0) -
                                 bankruptcy_offset(slot, side, std::exp(ls), mech_[slot].max_leverage)) / 4.0;
  const double se = std::sqrt(best->sigma() * best->sigma() / best->n_eff() +
                              cfg_.systematic_sd * cfg_.systematic_sd + lev_sd * lev_sd);
  const double var_d = std::pow(se / std::max(std::abs(slope), 1e-12), 2);
  const double var_p = cfg_.scale_prior_sd * cfg_.scale_prior_sd;
  const double post = (ls / var_d) / (1.0 / var_d + 1.0 / var_p);  // prior mean ln(1) = 0
  st.scale = std::exp(post);
  st.scale_sd = std::sqrt(1.0 / (1.0 / var_d + 1.0 / var_p));
  st.scale_n = best->n_eff();
  st.scale_source = RateSource::bankruptcy_offset;
}

Estimate Calibrator::rate_scale(std::size_t slot, Side side) const {
  const CalibSide& st = at(slot, side);
  Estimate e;
  e.value = st.scale;
  e.sd = st.scale * st.scale_sd;  // sd of the scale itself (ln-normal, first order)
  e.n_eff = st.scale_n;
  e.prior = 1.0;
  e.prior_sd = cfg_.scale_prior_sd;
  e.departs = st.scale_source == RateSource::bankruptcy_offset &&
              std::abs(std::log(st.scale)) > cfg_.depart_z * st.scale_sd;
  return e;
}

double Calibrator::placement_scale(std::size_t slot, Side side) const {
  // Levels move only on significant evidence: an estimate within depart_z sd of
  // the documented rate leaves them where the registry puts them.
  const Estimate e = rate_scale(slot, side);
  return e.departs ? e.value : 1.0;
}

bool Calibrator::departs(std::size_t slot, Side side) const {
  const Estimate off = offset(slot, side, doc_kind_.at(slot));
  if (off.n_eff < RobustLocation::kWarm) return false;
  return off.departs || rate_source(slot, side) == RateSource::convention_departs ||
         at(slot, side).applied_scale != 1.0;
}

double Calibrator::trigger_of(std::size_t slot, Side side, PriceKind kind, double reported) const {
  return reported * std::exp(-offset(slot, side, kind).value);
}

double Calibrator::maintenance_rate(std::size_t slot, Side /*side*/, double scale) const {
  const Mechanics& m = mech_.at(slot);
  return m.bracket_for(std::min(cfg_.ref_leverage, m.max_leverage)).rate * scale;
}

double Calibrator::level_sigma(std::size_t slot, Side side) const {
  const CalibSide& st = at(slot, side);
  const double m = maintenance_rate(slot, side, st.scale) + mech_.at(slot).fee_in_mm;
  const double s_level = m * st.scale_sd;     // a level moves by ~ dm in ln price
  const double s_off = offset(slot, side, doc_kind_.at(slot)).sd;
  return std::sqrt(s_level * s_level + s_off * s_off);
}

double Calibrator::max_leverage_at(std::size_t slot, double notional_usd) const {
  const Mechanics& m = mech_.at(slot);
  double lev = m.max_leverage;
  for (const Bracket& b : m.brackets)
    if (notional_usd >= b.floor) lev = std::min(m.max_leverage, b.max_leverage);
  return lev;
}

// ---- snapshots -------------------------------------------------------------------

void RobustLocation::save(serial::Writer& w) const {
  w.f64_span(warm_.data(), kWarm);
  w.f64_span(ring_.data(), kRing);
  w.i32(nw_);
  w.i32(nring_);
  w.i32(run_);
  w.u64(ring_pos_);
  w.f64(mu_);
  w.f64(n_);
  w.f64(sigma_floor_);
  w.f64(sd_);
  w.u64(count_);
  w.u64(clipped_);
  w.u64(restarts_);
}

void RobustLocation::load(serial::Reader& r) {
  RobustLocation x;
  r.f64_span(x.warm_.data(), kWarm);
  r.f64_span(x.ring_.data(), kRing);
  x.nw_ = r.i32();
  x.nring_ = r.i32();
  x.run_ = r.i32();
  x.ring_pos_ = r.u64();
  x.mu_ = r.f64();
  x.n_ = r.f64();
  x.sigma_floor_ = r.f64();
  x.sd_ = r.f64();
  x.count_ = r.u64();
  x.clipped_ = r.u64();
  x.restarts_ = r.u64();
  x.sigma_dirty_ = true;
  if (x.nw_ < 0 || x.nw_ > kWarm || x.nring_ < 0 || x.nring_ > kRing || x.ring_pos_ >= kRing ||
      std::abs(x.run_) > kShiftRun || !(x.n_ >= 0.0) || !std::isfinite(x.mu_))
    r.fail("calibrator estimate out of range");
  // The residuals are ordered (nth_element): a NaN among them breaks the ordering.
  for (double v : x.warm_)
    if (!std::isfinite(v)) r.fail("calibrator residual out of range");
  for (double v : x.ring_)
    if (!std::isfinite(v)) r.fail("calibrator residual out of range");
  if (!std::isfinite(x.n_) || !(std::isfinite(x.sd_) && x.sd_ >= 0.0) ||
      !(std::isfinite(x.sigma_floor_) && x.sigma_floor_ >= 0.0))
    r.fail("calibrator estimate out of range");
  *this = x;
}

void Calibrator::save_config(serial::Writer& w, const CalibratorConfig& c) {
  w.i64(c.fresh_ms);
  w.f64(c.huber_c);
  w.f64(c.sigma_floor);
  w.f64(c.systematic_sd);
  w.f64(c.max_n_eff);
  w.f64(c.scale_min);
  w.f64(c.scale_max);
  w.f64(c.scale_prior_sd);
  w.f64(c.ref_leverage);
  w.f64(c.apply_rel);
  w.u32(c.apply_every);
  w.f64(c.depart_z);
  w.boolean(c.widen_kernel);
}

CalibratorConfig Calibrator::load_config(serial::Reader& r) {
  CalibratorConfig c;
  c.fresh_ms = r.i64();
  c.huber_c = r.f64();
  c.sigma_floor = r.f64();
  c.systematic_sd = r.f64();
  c.max_n_eff = r.f64();
  c.scale_min = r.f64();
  c.scale_max = r.f64();
  c.scale_prior_sd = r.f64();
  c.ref_leverage = r.f64();
  c.apply_rel = r.f64();
  c.apply_every = r.u32();
  c.depart_z = r.f64();
  c.widen_kernel = r.boolean();
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    r.fail(std::string("invalid calibrator config: ") + e.what());
  }
  return c;
}

void Calibrator::save(serial::Writer& w) const {
  w.u64(mech_.size());
  for (std::size_t slot = 0; slot < mech_.size(); ++slot) {
    w.u8(static_cast<std::uint8_t>(doc_kind_[slot]));
    w.i64(mark_ts_[slot]);
    w.f64(mark_px_[slot]);
  }
  for (const CalibSide& st : state_) {
    for (const auto& loc : st.offset) loc.save(w);
    w.f64_span(st.offset_prior.data(), st.offset_prior.size());
    w.f64_span(st.offset_prior_sd.data(), st.offset_prior_sd.size());
    w.f64(st.scale);
    w.f64(st.scale_sd);
    w.f64(st.scale_n);
    w.u8(static_cast<std::uint8_t>(st.scale_source));
    w.f64(st.applied_scale);
    w.u32(st.since_check);
    w.f64(st.lq_mean);
    w.f64(st.lq_var);
    w.f64(st.lq_n);
    w.f64(st.q_max);
    w.u64(st.used);
    w.u64(st.no_reference);
  }
  // CALB minor 1 (appended): the mark of each run's last counted residual, the mark
  // the side's last residuals were measured against with their count, and which
  // venues have a public feed.
  for (const CalibSide& st : state_) {
    for (const auto& loc : st.offset) w.i64(loc.run_group());
    w.i64(st.ref_mark_ts);
    w.u32(st.ref_mark_used);
  }
  for (auto f : has_feed_) w.boolean(f != 0);
}

void Calibrator::load(serial::Reader& r) {
  if (r.u64() != mech_.size()) r.fail("calibrator venue count does not match");
  std::vector<PriceKind> kinds(mech_.size());
  std::vector<std::int64_t> mts(mech_.size());
  std::vector<double> mpx(mech_.size());
  for (std::size_t slot = 0; slot < mech_.size(); ++slot) {
    const std::uint8_t k = r.u8();
    if (k >= kKinds) r.fail("calibrator price kind out of range");
    kinds[slot] = static_cast<PriceKind>(k);
    mts[slot] = r.i64();
    mpx[slot] = r.f64();
    // No mark yet (the minimum), or a time events can be compared with without overflow.
    constexpr std::int64_t kMaxAbsTs = std::int64_t{1} << 62;
    if ((mts[slot] != std::numeric_limits<std::int64_t>::min() && (mts[slot] < -kMaxAbsTs || mts[slot] > kMaxAbsTs)) ||
        !(std::isfinite(mpx[slot]) && mpx[slot] >= 0.0))
      r.fail("calibrator mark out of range");
  }
  std::vector<CalibSide> states(state_.size());
  for (CalibSide& st : states) {
    for (auto& loc : st.offset) loc.load(r);
    r.f64_span(st.offset_prior.data(), st.offset_prior.size());
    r.f64_span(st.offset_prior_sd.data(), st.offset_prior_sd.size());
    st.scale = r.f64();
    st.scale_sd = r.f64();
    st.scale_n = r.f64();
    const std::uint8_t src = r.u8();
    if (src > 2) r.fail("calibrator rate source out of range");
    st.scale_source = static_cast<RateSource>(src);
    st.applied_scale = r.f64();
    st.since_check = r.u32();
    st.lq_mean = r.f64();
    st.lq_var = r.f64();
    st.lq_n = r.f64();
    st.q_max = r.f64();
    st.used = r.u64();
    st.no_reference = r.u64();
    if (!(st.scale > 0.0 && std::isfinite(st.scale) && st.applied_scale > 0.0 && std::isfinite(st.applied_scale)))
      r.fail("calibrator scale out of range");
    for (double v : {st.scale_sd, st.scale_n, st.lq_mean, st.lq_var, st.lq_n, st.q_max})
      if (!std::isfinite(v)) r.fail("calibrator statistic out of range");
    for (std::size_t k = 0; k < st.offset_prior.size(); ++k)
      if (!std::isfinite(st.offset_prior[k]) || !std::isfinite(st.offset_prior_sd[k]))
        r.fail("calibrator prior out of range");
  }
  // CALB minor 1 appended each run's mark, the side's reference mark and the venues'
  // feeds; a minor-0 snapshot has none (0: no mark; every venue has a feed, and the
  // Python layer re-applies the registry's venues without one).
  std::vector<std::uint8_t> feed(mech_.size(), 1);
  if (!r.done()) {
    for (CalibSide& st : states) {
      for (auto& loc : st.offset) loc.set_run_group(r.i64());
      st.ref_mark_ts = r.i64();
      st.ref_mark_used = r.u32();
      if (st.ref_mark_used > kPerMark) r.fail("calibrator mark count out of range");
    }
    for (auto& f : feed) f = r.boolean() ? 1 : 0;
  }
  doc_kind_ = std::move(kinds);
  has_feed_ = std::move(feed);
  mark_ts_ = std::move(mts);
  mark_px_ = std::move(mpx);
  state_ = std::move(states);
}

}  // namespace heatcore
