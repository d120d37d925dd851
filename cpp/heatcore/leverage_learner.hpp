// The Leverage Learner of one venue and side: an online EM estimate of the
// leverage mix from observed liquidations (DESIGN.md, "The three learners";
// issue 4).
//
// Model. The mix is a property of *openings*. Positions open at an unknown
// USD rate g (per hour) at the venue's price, a share m_t of them at leverage
// tier t; they close at a hazard 1 / lifetime_t (lifetime_hours at 10x,
// falling as leverage^-lifetime_exponent: high leverage closes sooner) and are
// liquidated when the price crosses their level. A documented share of them
// (VenueConfig::cross_share) is cross-margined and dies cross_distance times
// farther from entry: a prior, never learned (DESIGN.md). The exposure book
// only knows net open interest, so the learner asks SideBook to keep an
// *openings book* O_t: unit-rate openings (1 USD per hour at each OI
// reading's price), crossed and aged like real positions, in isolated and
// cross rows. At the first OI reading the book that predates it (a unit
// rate's steady state, each tier's lifetime of openings) is laid where the
// engine seeds the exposure book: its liquidations then have an explanation
// of their own instead of being pinned on the recent openings near them, but
// being of unknown vintage it is never evidence. A second, recency-weighted
// copy of the openings since the first reading fades each opening by its age
// at the half-life; attributions and crossed exposure are measured on it, so
// what is learned about a tier is about the positions opened lately (crossing
// positions opened before a change of regime says little about today's mix).
// With u_t = g m_t (the tier's opening rate):
//   * liquidated notional from tier t over a window is Poisson-like with mean
//     u_t * C_t, C_t the openings book's crossed exposure of tier t
//     (crossed-but-not-liquidated exposure is the evidence against a tier);
//   * open interest is sum_t u_t * N_t, with N_t the tier's surviving unit
//     mass plus the part of the book older than the first OI reading.
// With A_t the liquidated notional attributed to tier t, a Gamma prior of
// strength kappa around the venue's published mix p, and U the mean event
// notional (kappa counts expected liquidation *events*, not dollars):
//     u_t = (A_t + kappa p_t U) / (C_t + lambda N_t),  lambda: sum_t u_t N_t = OI.
// Tiers that price never crossed (C_t = 0) share what the crossed tiers leave
// of the open interest, in the prior's proportions: what is identifiable about
// them is their total. kappa is chosen per venue and side by empirical Bayes
// (Gamma-Poisson marginal likelihood over a log grid): data that agree with
// the archetype keep a strong prior, data far from it a weak one. Neighbouring
// tested tiers lend each other tier_smoothing of their evidence (their
// exposures overlap near almost every event; without it the EM drifts to
// spiky mixes).
// Reported: the openings mix m = u / sum(u) (the vintage of new positions,
// which follows a change of regime) and the open-interest mix u_t N_t / OI.
// The map weighs the exposure book with the openings mix (measured on the
// simulator: with the true openings mix the map scores liquidations better
// than with the true open-interest mix, because D_t already holds "all open
// interest as if at tier t" and is refilled near the price).
//
// E-step. The responsibility of tier t for an event at x is proportional to
// u_t times the openings book's exposure near x (every vintage): live levels
// in the kernel window plus what was crossed inside it in the last
// crossing_window_s (the move that triggered the event has usually consumed
// it). The recency-weighted share of that exposure is what counts as evidence. For venues that
// report the bankruptcy price (or an order at it), the window is mapped to each
// tier's trigger. The last buffer_events events are re-attributed at each
// refresh; older ones keep the attribution they had when they left the buffer.
// Events with no recent opening near them are counted (preexisting, or
// unexplained when the map has nothing there either), never forced onto a tier.
//
// Weighting and feeds. An event weighs its notional, clipped at size_cap times
// the running typical size. A sampled feed (<= 1 event per symbol and second)
// keeps one event per window: that event weighs at least the model's expected
// liquidations crossed in its window, which is the E-step for the censored
// events, so the mix is not biased toward what survives sampling.
//
// Forgetting. Evidence weighs 2^(-age / half_life_hours), the age counted from
// the opening of the positions it is about: the recency-weighted rows give the
// weight at the event or crossing, and A and C decay at the same half-life
// from then on. A new event's weight in the statistics is 1/n while n is small
// and floors at the decay rate, i.e. the step size of the classic online EM.
// (Measured on the simulator: a 5 h half-life follows a change of regime to
// band TV <= 0.20 a day later on seeds 1-8 and also ends closer to stationary
// mixes than 24 h did: the lifetime model's error grows with the age of a
// position, so old openings are the least trustworthy evidence.)
//
// Cost: O(tiers) per event and per crossing (plus the few crossing records in
// the time window), O(buffer * tiers * em_iterations) per refresh, and the
// map rebuild (O(tiers * bins)) only at refreshes. All memory is allocated at
// construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "heatcore/serialize.hpp"

namespace heatcore {

struct LearnerConfig {
  double half_life_hours = 5.0;      // forgetting: evidence fades with the age of the openings it is about
  double lifetime_hours = 24.0;      // mean position lifetime at 10x (closing hazard of the openings book)
  double lifetime_exponent = 1.0;    // lifetime ~ (leverage / 10)^-exponent: high leverage closes sooner
  std::size_t buffer_events = 512;   // events re-attributed at every refresh
  std::size_t refresh_events = 32;   // refresh after this many new events on a side...
  double refresh_hours = 0.5;        // ...or this long after the last refresh
  int em_iterations = 3;             // E/M passes per refresh
  double kernel_bins = 2.0;          // kernel half-width: max(kernel_bins bins,
  double kernel_frac = 0.0035;       //   kernel_frac * price)
  double crossing_window_s = 300.0;  // recently crossed exposure explains events this long
  std::size_t crossing_records = 64; // ring of recent crossings per side
  double tier_smoothing = 0.5;       // share of a tier's evidence lent to each neighbour tier
  double size_cap = 20.0;            // an event counts at most size_cap x the running typical size
  std::int64_t sample_window_ms = 1000;  // a sampled feed reports <= 1 event per window
  double prior_min = 0.5, prior_max = 5000.0;  // empirical-Bayes range of kappa (events)
  double loglik_floor = 1e-6;        // floor of the per-bin probability in the skill score
  void validate() const;             // throws std::invalid_argument naming the field
};

class LeverageLearner {
 public:
  LeverageLearner() = default;
  // `cross_share`: the venue's documented share of cross-margined positions; the
  // openings book arrays passed in below have 2 * tiers() rows (isolated, cross).
  LeverageLearner(const LearnerConfig& cfg, std::vector<double> prior, const std::vector<double>& tiers,
                  double cross_share = 0.0);

  std::size_t tiers() const noexcept { return prior_.size(); }

  // At an OI reading: the factors by which the openings book's tiers age since
  // its last aging (`age`, one per tier; null when it is not due: at most every
  // 5 minutes), the extra
  // factor of the recency-weighted rows (`recent`), the base quantity of
  // unit-rate openings to add at `price`, and at the first reading the base
  // quantity per tier of the book that predates it (`seed`, else null), to be
  // laid like the engine's seeded exposure book into the all-vintage rows.
  struct Openings { const double* age; double recent; double qty; const double* seed; };
  Openings on_open_interest(std::int64_t ts, double price, double oi_usd);

  // After a move covering [p_lo, p_hi]: the openings book's cumulative crossed
  // USD per row (4 * tiers(): all-vintage, then recency-weighted), and the exposure book's cumulative crossed base quantity and
  // per-tier totals (base, after the move).
  void on_cross(std::int64_t ts, double p_lo, double p_hi, const double* consumed_usd,
                const double* book_consumed, const double* book_totals);

  // One liquidation. `openings`: the openings book's base quantity per row (4 *
  // tiers()) with levels in the kernel window [k_lo, k_hi] * scale[t] (bin
  // units), before the event; `scale`: reported price to trigger level per tier. Returns false if
  // no recent opening explains it (not learned from).
  bool on_liquidation(std::int64_t ts, double price, double notional_usd, bool sampled,
                      const double* openings, const double* scale, double step, double k_lo, double k_hi);
  bool refresh_due(std::int64_t ts) const noexcept;
  // Re-attribute the buffer and solve for the rates; `totals` is the openings
  // book's per-tier base quantity, `price` the venue's price. No-op before the
  // first OI reading.
  void refresh(std::int64_t ts, const double* totals, double price);

  // Skill score of one event (log of the per-bin probability, floored), kept
  // here so that static engines score too.
  void add_loglik(double logp) noexcept { loglik_sum_ += logp; ++loglik_n_; }
  void count_unexplained() noexcept { ++diag_.unexplained; }

  // A user-set mix of open interest: the estimates jump to it (evidence is kept).
  void set_mix(const std::vector<double>& w);

  const std::vector<double>& prior() const noexcept { return prior_; }
  const std::vector<double>& openings_mix() const noexcept { return mix_; }
  const std::vector<double>& open_interest_mix() const noexcept { return oi_mix_; }
  // The fitted model of the open book: opening rate per tier (USD per hour; all
  // zero before the first refresh or after set_mix), the older book per tier
  // (hours of unit openings) and the cross-margined share.
  const std::vector<double>& opening_rates() const noexcept { return u_; }
  const std::vector<double>& older_book() const noexcept { return pre_; }
  double cross_share() const noexcept { return cross_; }
  const std::vector<double>& lifetimes_h() const noexcept { return life_h_; }  // per tier, hours

  struct Diagnostics {
    std::uint64_t n_events = 0;      // liquidations seen while learning
    std::uint64_t unexplained = 0;   // no exposure of any tier near them (map)
    std::uint64_t preexisting = 0;   // explained by the map but by no recent opening
    std::uint64_t sampled = 0, clipped = 0, refreshes = 0;
    double effective_events = 0.0;   // Kish effective sample size of the decayed evidence
    double prior_strength = 0.0;     // kappa, in expected events
    double mean_event_usd = 0.0;     // the unit of "expected events"
    double opening_rate_usd_h = 0.0; // sum_t u_t
    double loglik_sum = 0.0;
    std::uint64_t loglik_n = 0;
  };
  Diagnostics diagnostics() const;
  // Per tier: crossed exposure and attributed liquidations, in expected events at
  // the prior's opening rate, and whether the tier is tested (its crossings are
  // worth at least one expected liquidation).
  const std::vector<double>& crossed_events() const noexcept { return c_units_; }
  const std::vector<double>& attributed_events() const noexcept { return a_units_; }
  bool tested(std::size_t t) const noexcept;
  // The openings book's exposure near the last event, per tier (hours of unit openings).
  const std::vector<double>& last_event_exposure() const noexcept { return e_; }

  // ---- persist (defined in serialize.cpp, section LLRN) ----
  // Every learned and buffered field; the configuration is written by the engine.
  void save(serial::Writer& w) const;
  // Fill a learner constructed with the same configuration, prior and tiers;
  // throws serial::SnapshotError and leaves *this unchanged on bad bytes.
  void load(serial::Reader& r);
  // Fields added in LLRN minor 1 (written after every book's openings). Without
  // them (older snapshots) the learner goes on as version 1.0 did: no older book
  // in the openings book (it stays in pre_), recent = all vintages.
  void save_v1(serial::Writer& w) const;
  void load_v1(serial::Reader& r);
  void upgrade_v0() noexcept;

 private:
  void decay_to(std::int64_t ts) noexcept;
  void evict_oldest() noexcept;
  void smooth(double* a, double* c) noexcept;
  double pick_strength(const double* a, const double* c, const double* p) const;

  LearnerConfig cfg_;
  double tau_ms_ = 1.0;                  // e-folding time of the evidence, ms
  double cross_ = 0.0;                   // share of cross-margined positions (prior)
  std::vector<double> prior_, u_, mix_, oi_mix_;
  // Decayed statistics, referred to time acc_ts_: crossed USD per unit rate,
  // attributions (USD) of events evicted from the buffer.
  std::vector<double> c_, arch_;
  double s1_ = 0.0, s2_ = 0.0, sn_ = 0.0;  // sums of event weights, their squares, events
  std::int64_t acc_ts_ = 0;
  bool acc_started_ = false;
  // Open interest and the part of the book older than the first OI reading
  // (hours of unit openings per tier, aged by the closing hazard and crossing).
  double oi_usd_ = 0.0;
  std::int64_t last_oi_ts_ = 0;
  std::int64_t last_age_ts_ = 0;         // the openings book's last aging (LLRN minor 1)
  bool oi_seen_ = false;
  std::vector<double> pre_;
  std::vector<double> life_h_, age_;     // per tier: mean lifetime (hours), last aging factor
  std::vector<double> nbar_;             // time-averaged survivor mass (map weights)
  std::int64_t nbar_ts_ = 0;
  std::vector<double> snap_c_, snap_d_;
  std::vector<double> snap_all_;         // all-vintage rows' cumulative crossed USD
  // Ring of recent crossings (USD per unit rate): recency-weighted rows (x_usd_)
  // and all vintages (x_all_).
  std::vector<std::int64_t> x_ts_;
  std::vector<double> x_lo_, x_hi_, x_usd_, x_all_;
  std::size_t x_head_ = 0, x_count_ = 0;
  // Ring of recent events: time, weight (USD), openings exposure near the event,
  // all vintages (b_e_: what explains the event) and recency-weighted (b_r_: the
  // part of it that is evidence about the current openings).
  std::vector<std::int64_t> b_ts_;
  std::vector<double> b_q_, b_e_, b_r_;

  std::size_t b_head_ = 0, b_count_ = 0;
  // Workspace, sized once.
  std::vector<double> e_, a_, n_, c_units_, a_units_, sm_a_, sm_c_, bprior_, wa_, wc_;
  std::vector<double> er_, seed_q_;      // recent exposure near the last event; seed quantities (not saved)
  double log_size_ = 0.0;                // running log of the typical event size
  std::uint64_t size_n_ = 0;
  std::uint64_t since_refresh_ = 0;
  std::int64_t last_refresh_ts_ = 0;
  double kappa_ = 0.0, unit_ = 0.0, gbar_ = 0.0;
  Diagnostics diag_;
  double loglik_sum_ = 0.0;
  std::uint64_t loglik_n_ = 0;
};

// Posterior mode of the opening rates: u_t = (a_t + b_t) / (c_t + lambda n_t)
// with lambda such that sum_t u_t n_t = total (b_t: prior pseudo-counts).
// Exposed for tests. `out` has size count.
void solve_rates(std::size_t count, const double* a, const double* c, const double* b, const double* n,
                 double total, double* out);

}  // namespace heatcore
