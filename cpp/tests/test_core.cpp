// C++ unit tests of the core: ingest, grid growth, bad input, save/load.
// Built with -DHEATCORE_CPP_TESTS=ON; .ci/sanitize.sh runs them under
// AddressSanitizer and UndefinedBehaviorSanitizer. No test framework: each
// CHECK failure prints its line and the program exits non-zero.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "heatcore/cascade.hpp"
#include "heatcore/engine.hpp"
#include "heatcore/serialize.hpp"

namespace hc = heatcore;
namespace serial = heatcore::serial;

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    ++g_checks;                                                            \
    if (!(cond)) {                                                         \
      ++g_failures;                                                        \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
    }                                                                      \
  } while (0)

hc::EngineConfig make_config(bool learn = true) {
  hc::EngineConfig c;
  c.step = 50.0;
  c.tiers = {2, 3, 5, 10, 20, 25, 50, 75, 100, 125};
  c.learn = learn;
  for (std::uint16_t id : {0, 3}) {
    hc::VenueConfig v;
    v.name = id == 0 ? "alpha" : "beta";
    v.registry_id = id;
    v.mechanics.brackets = {hc::Bracket{0.0, 50000.0, 0.004, 0.0, 125.0},
                            hc::Bracket{50000.0, 1e18, 0.01, 300.0, 50.0}};
    v.mechanics.fee_in_mm = id == 0 ? 0.0005 : 0.0;
    v.prior_long.assign(c.tiers.size(), 1.0);
    v.prior_short.assign(c.tiers.size(), 1.0);
    v.prior_short[3] = 3.0;
    c.venues.push_back(v);
  }
  return c;
}

hc::Event ev(std::int64_t ts, std::uint16_t venue, hc::EventKind kind, double price, double value = 0.0,
             std::int8_t side = 0) {
  hc::Event e{};
  e.ts_ms = ts;
  e.price = price;
  e.value = value;
  e.venue = venue;
  e.kind = static_cast<std::uint8_t>(kind);
  e.side = side;
  return e;
}

// A deterministic stream: a random-walk price per venue, OI every 20 events,
// liquidations now and then; drifts far enough to make the grid grow.
std::vector<hc::Event> stream(std::uint32_t seed, std::size_t n, std::int64_t t0 = 1'700'000'000'000) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> step(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<hc::Event> out;
  out.reserve(n);
  double price = 60000.0, oi = 2e9;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t ts = t0 + static_cast<std::int64_t>(i) * 1000;
    const std::uint16_t venue = (i % 2) ? 3 : 0;
    price *= std::exp(0.002 * step(rng) + 0.0004);  // drift up: the grid must grow
    if (i % 20 == 5 || i % 20 == 10) {
      oi *= std::exp(0.02 * step(rng));
      out.push_back(ev(ts, venue, hc::EventKind::open_interest, price, oi));
    } else if (u(rng) < 0.1) {
      out.push_back(ev(ts, venue, hc::EventKind::liquidation, price, 1000.0 + 1e5 * u(rng),
                       static_cast<std::int8_t>(u(rng) < 0.5 ? 1 : -1)));
    } else {
      out.push_back(ev(ts, venue, hc::EventKind::price, price));
    }
  }
  return out;
}

std::vector<std::uint8_t> state(const hc::Engine& e) {
  serial::Writer w;
  e.save_state(w);
  return w.take();
}

hc::Engine load(const std::vector<std::uint8_t>& b, bool config_only = false) {
  serial::Reader r(b.data(), b.size());
  return hc::Engine::load_state(r, config_only);
}

// The state bytes with the reject counters blanked: what a refused input must not change.
std::vector<std::uint8_t> state_without_counters(const hc::Engine& e) {
  auto b = state(e);
  serial::Reader r(b.data(), b.size());
  serial::SectionHeader h;
  serial::Reader body(nullptr, 0);
  std::size_t pos = 0;
  while (r.next_section(h, body)) {
    const std::size_t payload = pos + serial::kSectionHeaderSize;
    if (h.tag == serial::tag("ENGN")) {
      const std::size_t n = body.u64();
      std::memset(b.data() + payload + 8, 0, 8 * n);
    }
    pos = payload + static_cast<std::size_t>(h.length);
  }
  return b;
}

std::vector<double> map_of(const hc::Engine& e, int slot, int side) {
  std::vector<double> l(static_cast<std::size_t>(e.grid().n)), s(l.size());
  if (!l.empty()) e.heatmap(slot, l.data(), s.data());
  return side == 0 ? l : s;
}

void test_crc() {
  const char* s = "123456789";
  CHECK(serial::crc32(s, 9) == 0xCBF43926u);  // the standard check value
  CHECK(serial::crc32(s + 4, 5, serial::crc32(s, 4)) == 0xCBF43926u);
  CHECK(serial::crc32(s, 0) == 0u);
}

void test_writer_reader() {
  serial::Writer w;
  {
    auto sec = w.section(serial::tag("TEST"), 1, 2, true);
    w.u8(7);
    w.i64(-5);
    w.f64(-0.0);
    w.f64(std::numeric_limits<double>::denorm_min());
    w.str("héllo");
    w.f64s({1.5, 2.5});
  }
  serial::Reader r(w.buffer().data(), w.size());
  serial::SectionHeader h;
  serial::Reader body(nullptr, 0);
  CHECK(r.next_section(h, body));
  CHECK(h.tag == serial::tag("TEST") && h.major == 1 && h.minor == 2 && h.required());
  CHECK(body.u8() == 7);
  CHECK(body.i64() == -5);
  const double nz = body.f64();
  CHECK(nz == 0.0 && std::signbit(nz));
  CHECK(body.f64() == std::numeric_limits<double>::denorm_min());
  CHECK(body.str() == "héllo");
  CHECK((body.f64s(10) == std::vector<double>{1.5, 2.5}));
  CHECK(body.done());
  CHECK(!r.next_section(h, body));
  // Reading past the end is an error, not a read out of bounds.
  bool threw = false;
  try {
    body.u32();
  } catch (const serial::SnapshotError&) {
    threw = true;
  }
  CHECK(threw);
  // An array length larger than the bytes left is refused before allocating.
  serial::Writer w2;
  w2.u64(std::uint64_t{1} << 60);
  serial::Reader r2(w2.buffer().data(), w2.size());
  threw = false;
  try {
    r2.f64s(std::numeric_limits<std::size_t>::max());
  } catch (const serial::SnapshotError&) {
    threw = true;
  }
  CHECK(threw);
}

void test_ingest_and_growth() {
  hc::Engine e(make_config());
  const auto evs = stream(1, 4000);
  const auto c = e.ingest(evs.data(), evs.size());
  CHECK(c.rejected_total() == 0);
  CHECK(c.price + c.open_interest + c.liquidation == evs.size());
  // The price drifted ~5x: the grid grew to cover it.
  const double last = evs.back().price;
  CHECK(last > 2.0 * evs.front().price);
  CHECK(e.grid().contains(static_cast<std::int64_t>(std::llround(last / e.grid().step))));
  // Invariant: after an OI reading every tier's total equals the OI in base units.
  const auto& v = e.venue(0);
  for (double tot : v.book[0].tier_totals()) CHECK(tot <= v.stats.oi_base * (1 + 1e-9));
  double sum = 0.0;
  for (double x : map_of(e, -1, 0)) {
    CHECK(std::isfinite(x) && x >= 0.0);
    sum += x;
  }
  CHECK(sum > 0.0);
}

void test_bad_input() {
  hc::Engine e(make_config());
  const auto evs = stream(2, 600);
  e.ingest(evs.data(), evs.size());
  const std::int64_t t = evs.back().ts_ms + 1000;
  const double p = evs.back().price;
  const double oi_usd = e.venue(0).stats.oi_base * p;
  struct Bad {
    hc::Event ev;
    hc::Reject why;
  };
  std::vector<Bad> bad = {
      {ev(t, 0, hc::EventKind::price, std::nan("")), hc::Reject::non_finite},
      {ev(t, 0, hc::EventKind::price, std::numeric_limits<double>::infinity()), hc::Reject::non_finite},
      {ev(t, 0, hc::EventKind::price, -1.0), hc::Reject::non_positive_price},
      {ev(t, 0, hc::EventKind::price, 0.0), hc::Reject::non_positive_price},
      {ev(t, 0, hc::EventKind::price, p * 100.0), hc::Reject::absurd_price},
      {ev(t, 0, hc::EventKind::price, 1e300), hc::Reject::absurd_price},
      {ev(t, 9, hc::EventKind::price, p), hc::Reject::unknown_venue},
      {ev(t, 65535, hc::EventKind::price, p), hc::Reject::unknown_venue},
      {ev(t - 60'000, 0, hc::EventKind::price, p), hc::Reject::out_of_order},
      {ev(t, 0, hc::EventKind::open_interest, p, 0.0), hc::Reject::non_positive_size},
      {ev(t, 0, hc::EventKind::open_interest, p, -5.0), hc::Reject::non_positive_size},
      {ev(t, 0, hc::EventKind::open_interest, p, std::nan("")), hc::Reject::non_finite},
      {ev(t, 0, hc::EventKind::liquidation, p, 1000.0, 0), hc::Reject::unknown_side},
      {ev(t, 0, hc::EventKind::liquidation, p, 1000.0, 5), hc::Reject::unknown_side},
      {ev(t, 0, hc::EventKind::liquidation, p, -1.0, 1), hc::Reject::non_positive_size},
      {ev(t, 0, hc::EventKind::liquidation, p, oi_usd * 1.5, 1), hc::Reject::absurd_size},
      {ev(t, 0, hc::EventKind::liquidation, p, std::numeric_limits<double>::infinity(), -1), hc::Reject::non_finite},
      {ev(evs.back().ts_ms, evs.back().venue, static_cast<hc::EventKind>(evs.back().kind), evs.back().price,
          evs.back().value, evs.back().side),
       hc::Reject::duplicate},
  };
  hc::Event unknown_kind = ev(t, 0, hc::EventKind::price, p);
  unknown_kind.kind = 9;
  bad.push_back({unknown_kind, hc::Reject::unknown_kind});
  const auto before = state_without_counters(e);
  const auto rejected_before = e.rejected();
  for (const auto& b : bad) {
    const auto r = e.apply(b.ev);
    if (r != b.why)
      std::fprintf(stderr, "  expected %s, got %s\n", hc::reject_name(b.why), hc::reject_name(r));
    CHECK(r == b.why);
  }
  CHECK(state_without_counters(e) == before);  // a refused input changes nothing else
  std::uint64_t added = 0;
  for (std::size_t i = 0; i < rejected_before.size(); ++i) added += e.rejected()[i] - rejected_before[i];
  CHECK(added == bad.size());
  // The same event with a new timestamp is not a duplicate.
  hc::Event again = evs.back();
  again.ts_ms = t;
  CHECK(e.apply(again) == hc::Reject::ok);
}

void test_round_trip() {
  for (bool learn : {true, false}) {
    const auto evs = stream(3, 6000);
    const std::size_t cut = 2345;
    hc::Engine first(make_config(learn));
    first.ingest(evs.data(), cut);
    first.set_learning(1, false);  // learn flags are state too
    const auto bytes = state(first);
    hc::Engine resumed = load(bytes);
    CHECK(state(resumed) == bytes);  // load -> save reproduces the bytes
    resumed.ingest(evs.data() + cut, evs.size() - cut);
    first.ingest(evs.data() + cut, evs.size() - cut);
    CHECK(state(resumed) == state(first));  // bit-identical after continuing
    for (int slot = -1; slot < 2; ++slot)
      for (int side = 0; side < 2; ++side) CHECK(map_of(resumed, slot, side) == map_of(first, slot, side));
    // A duplicate of an event from before the snapshot is still caught after loading.
    hc::Engine again = load(bytes);
    CHECK(again.apply(evs[cut - 1]) == hc::Reject::duplicate);
    // config_only: same configuration, empty state.
    hc::Engine fresh = load(bytes, true);
    CHECK(fresh.grid().n == 0 && fresh.last_ts() == std::numeric_limits<std::int64_t>::min());
    fresh.ingest(evs.data(), cut);
    hc::Engine plain(make_config(learn));
    plain.ingest(evs.data(), cut);
    CHECK(state(fresh) == state(plain));
  }
}

void test_corrupt_snapshots() {
  hc::Engine e(make_config());
  const auto evs = stream(4, 300);
  e.ingest(evs.data(), evs.size());
  const auto good = state(e);
  std::size_t refused = 0, loaded = 0;
  // Every truncation is refused (no section may be cut).
  for (std::size_t n = 0; n < good.size(); n += 1 + n / 64) {
    std::vector<std::uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      load(cut);
      ++loaded;
    } catch (const serial::SnapshotError&) {
      ++refused;
    }
  }
  CHECK(loaded == 0 && refused > 0);
  // Random byte flips: an error or a loadable engine, never a crash or UB
  // (the file-level CRC catches these; the core must survive them anyway).
  std::mt19937 rng(5);
  std::uniform_int_distribution<std::size_t> pos(0, good.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  std::size_t errors = 0;
  for (int i = 0; i < 400; ++i) {
    auto b = good;
    for (int k = 0; k < 3; ++k) b[pos(rng)] = static_cast<std::uint8_t>(byte(rng));
    try {
      hc::Engine x = load(b);
      const auto more = stream(6, 50, evs.back().ts_ms + 1000);
      x.ingest(more.data(), more.size());
      (void)map_of(x, -1, 0);
    } catch (const serial::SnapshotError&) {
      ++errors;
    }
  }
  CHECK(errors > 0);
}

void test_versions() {
  hc::Engine e(make_config());
  const auto evs = stream(7, 200);
  e.ingest(evs.data(), evs.size());
  auto with_extra = [&](std::uint16_t major, bool required) {
    serial::Writer w;
    e.save_state(w);
    auto sec = w.section(serial::tag("ZZZZ"), major, 0, required);
    w.f64(1.0);
    sec.close();
    return w.take();
  };
  // An optional section this version does not know (a newer minor) is skipped.
  hc::Engine x = load(with_extra(1, false));
  CHECK(state(x) == state(e));
  bool threw = false;
  try {
    load(with_extra(1, true));
  } catch (const serial::SnapshotError&) {
    threw = true;
  }
  CHECK(threw);
  // A known section with a newer major version is refused.
  auto b = state(e);
  b[4] = 2;  // CONF major -> 2
  threw = false;
  try {
    load(b);
  } catch (const serial::SnapshotError& ex) {
    threw = std::string(ex.what()).find("format version 2") != std::string::npos;
  }
  CHECK(threw);
}

// [calibrator] A venue that reports the bankruptcy price with a 1.5x stale
// maintenance rate: the rate is recovered, the levels move, NaN never reaches the
// estimates, and a snapshot round trip is exact.
void test_calibrator() {
  hc::EngineConfig cfg = make_config(true);
  hc::Engine e(cfg);
  const hc::Mechanics& mech = cfg.venues[0].mechanics;
  const double off = std::log((1.0 - 1.0 / 50.0) / mech.liquidation_ratio(hc::Side::long_, 50.0, 1.5));
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(0.0, 1e-4);
  std::vector<hc::Event> evs;
  double price = 60000.0;
  const std::int64_t t0 = 1'700'000'000'000;
  evs.push_back(ev(t0, 0, hc::EventKind::price, price));
  evs.push_back(ev(t0 + 1, 0, hc::EventKind::open_interest, price, 1e9));
  for (int i = 0; i < 400; ++i) {
    const std::int64_t ts = t0 + 5000 * (i + 1);
    price *= std::exp(2e-4 * noise(rng) / 1e-4);
    evs.push_back(ev(ts, 0, hc::EventKind::price, price));
    hc::Event liq = ev(ts + 200, 0, hc::EventKind::liquidation, price * std::exp(off + noise(rng)), 5e4, 1);
    liq.price_kind = static_cast<std::uint8_t>(hc::PriceKind::bankruptcy);
    evs.push_back(liq);
    if (i % 50 == 7) {  // a NaN report is refused before any learner sees it
      hc::Event bad = liq;
      bad.ts_ms += 1;
      bad.price = std::numeric_limits<double>::quiet_NaN();
      evs.push_back(bad);
    }
  }
  const std::size_t cut = evs.size() / 2;
  e.ingest(evs.data(), cut);
  const auto bytes = state(e);
  hc::Engine resumed = load(bytes);
  CHECK(state(resumed) == bytes);
  e.ingest(evs.data() + cut, evs.size() - cut);
  resumed.ingest(evs.data() + cut, evs.size() - cut);
  CHECK(state(resumed) == state(e));
  const hc::Estimate s = e.calibrator().rate_scale(0, hc::Side::long_);
  CHECK(std::abs(s.value / 1.5 - 1.0) < 0.05);
  CHECK(s.departs && s.n_eff > 100);
  CHECK(std::abs(e.calibrator().applied_scale(0, hc::Side::long_) / 1.5 - 1.0) < 0.05);
  CHECK(e.venue(0).book[0].ratios()[6] == mech.liquidation_ratio(hc::Side::long_, 50.0,
                                                                  e.calibrator().applied_scale(0, hc::Side::long_)));
  CHECK(e.calibrator().rate_scale(1, hc::Side::long_).value == 1.0);  // the other venue saw nothing
  CHECK(std::isfinite(e.calibrator().offset(0, hc::Side::long_, hc::PriceKind::bankruptcy).value));
  CHECK(e.calibrator().side_state(0, hc::Side::long_).used == 400);
}

// The Cascade Learner on its own: the chain impact law is recovered exactly from
// noiseless ticks; the recalibration issues the raw walk until its record says
// otherwise; the model's state round-trips bit for bit and a 1.0
// reader of the same bytes keeps the learned walk (CASC 1.4).
void test_cascade() {
  hc::CascadeConfig cfg;
  hc::CascadeModel m(cfg, 2);
  CHECK(!m.chain_impact().fitted);
  CHECK(m.recalibrate(1, 0.3) == 0.3);
  const double b = 0.75, scale_m = 3e-4;  // return per ($1M)^b
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> size(std::log(2e5), 1.0);
  double price = 50'000.0;
  std::int64_t t = 1'700'000'000'000;
  for (int chain = 0; chain < 120; ++chain) {
    const hc::Side side = chain % 2 == 0 ? hc::Side::long_ : hc::Side::short_;
    double q = 0.0;
    for (int k = 0; k < 8; ++k) {
      for (std::size_t v = 0; v < 2; ++v) m.on_price(v, t, price, true);
      const double dq = size(rng);
      m.on_liquidation(t + 300, side, price, dq, nullptr, 0, true);
      const double move = scale_m * (std::pow((q + dq) / 1e6, b) - std::pow(q / 1e6, b));
      q += dq;
      price *= std::exp(side == hc::Side::long_ ? -move : move);
      t += 1000;
    }
    for (int k = 0; k < 70; ++k, t += 1000)
      for (std::size_t v = 0; v < 2; ++v) m.on_price(v, t, price, true);
  }
  const hc::ChainImpact ci = m.chain_impact();
  CHECK(ci.fitted && ci.n == 120.0 * 8);
  CHECK(std::abs(ci.exponent - b) < 1e-9);
  CHECK(std::abs(ci.scale * std::pow(1e6, ci.exponent) / scale_m - 1.0) < 1e-6);
  CHECK(ci.residual < 1e-9);
  CHECK(m.chains_total() == 120);  // each quiet minute closed its chain
  CHECK(std::abs(m.consensus_price() - price) < 1e-9 * price);

  serial::Writer w;
  m.save(w);
  const auto bytes = w.take();
  hc::CascadeModel back(cfg, 2);
  serial::Reader r(bytes.data(), bytes.size());
  back.load(r, 4);
  serial::Writer w2;
  back.save(w2);
  CHECK(w2.buffer() == bytes);
  hc::CascadeModel v13(cfg, 2);  // the bytes without 1.4's vol clock read as 1.3: same state
  serial::Reader r13(bytes.data(), bytes.size() - 8);
  v13.load(r13, 3);
  serial::Writer w13;
  v13.save(w13);
  CHECK(w13.buffer() == bytes);  // the clock restarts at the latest venue mark: here the same time
  hc::CascadeModel old(cfg, 2);  // the same bytes read as a 1.0 section: no law, no records
  serial::Reader r0(bytes.data(), bytes.size());
  old.load(r0, 0);
  CHECK(!old.chain_impact().fitted && old.chains_total() == m.chains_total());
  CHECK(old.impact(0).exponent == m.impact(0).exponent);
  hc::CascadeModel cut(cfg, 2);  // truncated 1.2 bytes are refused, the model untouched
  serial::Reader rc(bytes.data(), bytes.size() - 100);
  bool refused = false;
  try {
    cut.load(rc, 3);
  } catch (const serial::SnapshotError&) {
    refused = true;
  }
  CHECK(refused && cut.chains_total() == 0);
}

// The volatility forgets on the configured half-life in seconds whatever the
// number of venues feeding it (CASC 1.4; before, each venue's return decayed
// the shared sums by its own interval: `venues` times too fast).
void test_cascade_vol_clock() {
  hc::CascadeConfig cfg;
  const double var = cfg.prior_vol_annual * cfg.prior_vol_annual / (365.0 * 86400.0);
  const double a = std::sqrt(var * 5.0);
  auto run = [&](std::size_t venues) {
    hc::CascadeModel m(cfg, venues);
    std::int64_t t = 1'700'000'000'000;
    double lp = std::log(50'000.0);
    for (int i = 0; i < 24 * 720; ++i, t += 5000) {  // 24 h of returns +-a every 5 s
      lp += i % 2 == 0 ? a : -a;
      for (std::size_t v = 0; v < venues; ++v) m.on_price(v, t, std::exp(lp), false);
    }
    const double busy = m.vol_per_sqrt_s();
    for (int i = 0; i < static_cast<int>(cfg.vol_half_life_s / 5.0); ++i, t += 5000)  // one half-life flat
      for (std::size_t v = 0; v < venues; ++v) m.on_price(v, t, std::exp(lp), false);
    return std::pair<double, double>{busy, m.vol_per_sqrt_s()};
  };
  const auto one = run(1), eight = run(8);
  CHECK(std::abs(one.first / std::sqrt(var) - 1.0) < 0.02 && std::abs(eight.first / std::sqrt(var) - 1.0) < 0.02);
  // After one flat half-life: r^2 halved, seconds kept (the prior's hour weighs less with 8 venues).
  CHECK(std::abs(one.second / eight.second - 1.0) < 0.06);
  CHECK(eight.second > 0.6 * std::sqrt(var));
}

}  // namespace

// The open book the learner's model generates (SideBook::generative_map): recent
// openings at each tier's (isolated or cross) level, mixed by the cross share,
// plus the older book placed where the exposure book holds the tier.
void test_generative_map() {
  const hc::PriceGrid g{50.0, 1000, 2000};  // bins 1000..2999: $50k..$150k
  hc::SideBook book(hc::Side::long_, {0.9, 0.5}, {0.5, 0.5});
  book.regrid(hc::PriceGrid{50.0, g.k0, 0}, g);  // size the map on the grid, as the engine does
  book.set_cross_distance(2.0);  // cross rows: levels 0.8 and 0.01 (floored) of entry
  book.add_openings(g, 2000, 3.0);
  book.add_openings(g, 2100, 1.0);
  const double u[2] = {2.0, 0.5}, none[2] = {0.0, 0.0};
  std::vector<double> out(static_cast<std::size_t>(g.n), -1.0);
  auto sum = [&] { double x = 0.0; for (double v : out) x += v; return x; };
  auto at = [&](double k) {  // mass deposited around fractional bin k
    const auto k0 = static_cast<std::int64_t>(std::floor(k));
    return out[static_cast<std::size_t>(k0 - g.k0)] + out[static_cast<std::size_t>(k0 + 1 - g.k0)];
  };
  book.generative_map(g, u, none, 0.0, out.data());  // isolated only
  const double iso0 = 2.0 * 50.0 * (3.0 * 2000 * 0.9 + 1.0 * 2100 * 0.9);
  const double iso1 = 0.5 * 50.0 * (3.0 * 2000 * 0.5 + 1.0 * 2100 * 0.5);
  CHECK(std::fabs(sum() - (iso0 + iso1)) < 1e-6 * sum());
  CHECK(std::fabs(at(1800.0) - 2.0 * 50.0 * 3.0 * 1800.0) < 1e-6);  // tier 0, entry 2000: level bin 1800
  CHECK(std::fabs(at(1050.0) - 0.5 * 50.0 * 1.0 * 1050.0) < 1e-6);  // tier 1, entry 2100: level 1050
  // Half cross-margined: the cross row of tier 0 dies at 0.8 of entry; tier 1's
  // cross level (0.01 of entry) lies off the grid and is not deposited.
  book.generative_map(g, u, none, 0.5, out.data());
  CHECK(std::fabs(at(1600.0) - 0.5 * 2.0 * 50.0 * 3.0 * 1600.0) < 1e-6);
  CHECK(std::fabs(at(1800.0) - 0.5 * 2.0 * 50.0 * 3.0 * 1800.0) < 1e-6);
  // The older book: u_t * pre_t USD where the exposure book holds tier t.
  book.add(g, 0, 2400, 1.0);
  const double pre[2] = {100.0, 100.0};
  book.generative_map(g, u, pre, 0.0, out.data());
  CHECK(std::fabs(sum() - (iso0 + iso1 + 2.0 * 100.0)) < 1e-6 * sum());  // tier 1 holds nothing: no older mass
  CHECK(std::fabs(at(2160.0) - 2.0 * 100.0) < 1e-6);                  // entry 2400 at 0.9
  for (double v : out) CHECK(std::isfinite(v) && v >= 0.0);
}

// Engine::open_book: the exposure map where no learner has fitted (learn off), a
// different, finite book where it has; the sum over venues is the sum of each.
void test_open_book() {
  const auto evs = stream(7, 6000);
  for (bool learn : {false, true}) {
    hc::Engine e(make_config(learn));
    e.ingest(evs.data(), evs.size());
    const auto n = static_cast<std::size_t>(e.grid().n);
    std::vector<double> l(n), s(n), l0(n), s0(n), l1(n), s1(n);
    e.open_book(-1, l.data(), s.data());
    e.open_book(0, l0.data(), s0.data());
    e.open_book(1, l1.data(), s1.data());
    const auto map_l = map_of(e, -1, 0);
    bool same = true;
    double tot = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      CHECK(std::isfinite(l[i]) && l[i] >= 0.0 && std::isfinite(s[i]) && s[i] >= 0.0);
      CHECK(std::fabs(l[i] - l0[i] - l1[i]) <= 1e-9 * (1.0 + l[i]));
      same = same && l[i] == map_l[i];
      tot += l[i] + s[i];
    }
    CHECK(tot > 0.0);
    CHECK(same == !learn);
    bool threw = false;
    try {
      e.open_book(static_cast<int>(e.venue_count()), l.data(), s.data());
    } catch (const std::out_of_range&) {
      threw = true;
    }
    CHECK(threw);
  }
}

int main() {
  test_crc();
  test_writer_reader();
  test_ingest_and_growth();
  test_bad_input();
  test_round_trip();
  test_corrupt_snapshots();
  test_versions();
  test_calibrator();
  test_cascade();
  test_generative_map();
  test_cascade_vol_clock();
  test_open_book();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
