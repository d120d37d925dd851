#include "heatcore/serialize.hpp"

#include <algorithm>
#include <numeric>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "heatcore/engine.hpp"

namespace heatcore::serial {

namespace {

// Slicing-by-8: eight tables let the loop fold eight bytes per step.
using CrcTables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr CrcTables make_crc_tables() noexcept {
  CrcTables t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[0][i] = c;
  }
  for (std::size_t k = 1; k < 8; ++k)
    for (std::size_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFFu];
  return t;
}
constexpr CrcTables kCrc = make_crc_tables();

inline std::uint32_t load_le32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

}  // namespace

std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t crc) noexcept {
  const auto* p = static_cast<const std::uint8_t*>(data);
  crc = ~crc;
  for (; size >= 8; size -= 8, p += 8) {
    const std::uint32_t a = load_le32(p) ^ crc, b = load_le32(p + 4);
    crc = kCrc[7][a & 0xFFu] ^ kCrc[6][(a >> 8) & 0xFFu] ^ kCrc[5][(a >> 16) & 0xFFu] ^ kCrc[4][a >> 24] ^
          kCrc[3][b & 0xFFu] ^ kCrc[2][(b >> 8) & 0xFFu] ^ kCrc[1][(b >> 16) & 0xFFu] ^ kCrc[0][b >> 24];
  }
  for (; size > 0; --size, ++p) crc = kCrc[0][(crc ^ *p) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

std::string tag_name(std::uint32_t t) {
  std::string s(4, '?');
  for (int i = 0; i < 4; ++i) {
    const auto c = static_cast<char>((t >> (8 * i)) & 0xFFu);
    s[static_cast<std::size_t>(i)] = (c >= 0x20 && c < 0x7F) ? c : '?';
  }
  return s;
}

// ---- Writer -------------------------------------------------------------------

void Writer::raw_le(std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) buf_.push_back(static_cast<std::uint8_t>((v >> (8 * i)) & 0xFFu));
}

void Writer::f64(double v) {
  std::uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  u64(bits);
}

void Writer::str(const std::string& s) {
  u32(static_cast<std::uint32_t>(s.size()));
  bytes(s.data(), s.size());
}

void Writer::f64s(const std::vector<double>& v) {
  u64(v.size());
  f64_span(v.data(), v.size());
}

void Writer::f64_span(const double* v, std::size_t n) {
  buf_.reserve(buf_.size() + 8 * n);
  for (std::size_t i = 0; i < n; ++i) f64(v[i]);
}

void Writer::i64s(const std::vector<std::int64_t>& v) {
  u64(v.size());
  for (auto x : v) i64(x);
}

void Writer::u64s(const std::vector<std::uint64_t>& v) {
  u64(v.size());
  for (auto x : v) u64(x);
}

void Writer::bytes(const void* data, std::size_t n) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  buf_.insert(buf_.end(), p, p + n);
}

Writer::Section Writer::section(std::uint32_t t, std::uint16_t major, std::uint16_t minor, bool required) {
  u32(t);
  u16(major);
  u16(minor);
  u32(required ? kSectionRequired : 0u);
  const std::size_t at = buf_.size();
  u64(0);  // length, patched by Section::close()
  return Section(*this, at);
}

void Writer::Section::close() noexcept {
  if (w_ == nullptr) return;
  auto& b = w_->buf_;
  const std::uint64_t len = b.size() - (at_ + 8);
  for (int i = 0; i < 8; ++i) b[at_ + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>((len >> (8 * i)) & 0xFFu);
  w_ = nullptr;
}

// ---- Reader -------------------------------------------------------------------

void Reader::fail(const std::string& what) const { throw SnapshotError(where_ + ": " + what); }

void Reader::need(std::size_t n) {
  if (n > remaining()) fail("truncated (needs " + std::to_string(n) + " more bytes, " +
                            std::to_string(remaining()) + " left)");
}

std::uint64_t Reader::raw_le(int n) {
  need(static_cast<std::size_t>(n));
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(p_[i]) << (8 * i);
  p_ += n;
  return v;
}

std::uint8_t Reader::u8() {
  need(1);
  return *p_++;
}

double Reader::f64() {
  const std::uint64_t bits = u64();
  double v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

bool Reader::boolean() {
  const std::uint8_t v = u8();
  if (v > 1) fail("boolean field holds " + std::to_string(v));
  return v == 1;
}

std::string Reader::str(std::size_t max_len) {
  const std::size_t n = u32();
  if (n > max_len) fail("string too long");
  need(n);
  std::string s(reinterpret_cast<const char*>(p_), n);
  p_ += n;
  return s;
}

std::vector<double> Reader::f64s(std::size_t max_count) {
  const std::uint64_t n = u64();
  if (n > max_count || n > remaining() / 8) fail("array length " + std::to_string(n) + " out of range");
  std::vector<double> v(static_cast<std::size_t>(n));
  f64_span(v.data(), v.size());
  return v;
}

void Reader::f64_span(double* out, std::size_t n) {
  if (n > remaining() / 8) fail("truncated array");
  for (std::size_t i = 0; i < n; ++i) out[i] = f64();
}

std::vector<std::int64_t> Reader::i64s(std::size_t max_count) {
  const std::uint64_t n = u64();
  if (n > max_count || n > remaining() / 8) fail("array length " + std::to_string(n) + " out of range");
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = i64();
  return v;
}

std::vector<std::uint64_t> Reader::u64s(std::size_t max_count) {
  const std::uint64_t n = u64();
  if (n > max_count || n > remaining() / 8) fail("array length " + std::to_string(n) + " out of range");
  std::vector<std::uint64_t> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = u64();
  return v;
}

void Reader::skip(std::size_t n) {
  need(n);
  p_ += n;
}

bool Reader::next_section(SectionHeader& h, Reader& body) {
  if (done()) return false;
  need(kSectionHeaderSize);
  h.tag = u32();
  h.major = u16();
  h.minor = u16();
  h.flags = u32();
  h.length = u64();
  if (h.length > remaining()) fail("section " + tag_name(h.tag) + " is truncated");
  const auto len = static_cast<std::size_t>(h.length);
  body = Reader(p_, len, where_ + "/" + tag_name(h.tag));
  p_ += len;
  return true;
}

void check_version(const SectionHeader& h, std::uint16_t supported_major) {
  if (h.major > supported_major)
    throw SnapshotError("section " + tag_name(h.tag) + " has format version " + std::to_string(h.major) + "." +
                        std::to_string(h.minor) + "; this library reads up to " + std::to_string(supported_major) +
                        ".x (upgrade heatcore to load it)");
  if (h.major == 0) throw SnapshotError("section " + tag_name(h.tag) + " has invalid major version 0");
}

}  // namespace heatcore::serial

// ---- Engine and SideBook state ---------------------------------------------------
//
// Sections written by Engine::save_state, in order (each version 1.0):
//   CONF (required)  config: step, tiers, learn, limits, venues with mechanics and priors
//   GRID (required)  the shared price grid
//   ENGN (required)  reject counters, last_ts, reference price, learn flags, duplicate filter
//   VENU (required)  one per venue: VenueStats
//   BOOK (required)  one per venue and side: ratios, mix, totals, D over [lo, hi], map;
//                    1.1 appends the entry window and the per-tier maps M_t (book.hpp)
//   ...              learner sections (Engine::save_learner_sections), optional or required:
//                    CASC (cascade), FCST (horizon forecast), LLRN (Leverage Learner)
namespace heatcore {

using serial::Reader;
using serial::SectionHeader;
using serial::Writer;

namespace {

constexpr std::uint32_t kConf = serial::tag("CONF");
constexpr std::uint32_t kGrid = serial::tag("GRID");
constexpr std::uint32_t kEngn = serial::tag("ENGN");
constexpr std::uint32_t kVenu = serial::tag("VENU");
constexpr std::uint32_t kBook = serial::tag("BOOK");
constexpr std::size_t kMaxTiers = 4096;
constexpr std::size_t kMaxVenues = 65536;

void write_config(Writer& w, const EngineConfig& c) {
  w.f64(c.step);
  w.f64s(c.tiers);
  w.boolean(c.learn);
  w.f64(c.seed_spread);
  w.i64(c.ts_tolerance_ms);
  w.f64(c.max_price_ratio);
  w.i64(c.max_bins);
  w.u32(static_cast<std::uint32_t>(c.venues.size()));
  for (const auto& v : c.venues) {
    w.str(v.name);
    w.u16(v.registry_id);
    const Mechanics& m = v.mechanics;
    w.u32(static_cast<std::uint32_t>(m.brackets.size()));
    for (const auto& b : m.brackets) {
      w.f64(b.floor);
      w.f64(b.cap);
      w.f64(b.rate);
      w.f64(b.deduction);
      w.f64(b.max_leverage);
    }
    w.f64(m.fee_in_mm);
    w.f64(m.max_leverage);
    w.f64(m.representative_notional);
    w.boolean(m.inverse);
    w.i32(static_cast<std::int32_t>(m.formula));
    w.f64s(v.prior_long);
    w.f64s(v.prior_short);
  }
}

EngineConfig read_config(Reader& r) {
  EngineConfig c;
  c.step = r.f64();
  c.tiers = r.f64s(kMaxTiers);
  c.learn = r.boolean();
  c.seed_spread = r.f64();
  c.ts_tolerance_ms = r.i64();
  c.max_price_ratio = r.f64();
  c.max_bins = r.i64();
  const std::size_t nv = r.u32();
  if (nv == 0 || nv > kMaxVenues) r.fail("venue count out of range");
  for (std::size_t i = 0; i < nv; ++i) {
    VenueConfig v;
    v.name = r.str(256);
    v.registry_id = r.u16();
    Mechanics& m = v.mechanics;
    const std::size_t nb = r.u32();
    if (nb == 0 || nb > 1024 || nb > r.remaining() / 40) r.fail("bracket count out of range");
    m.brackets.resize(nb);
    for (auto& b : m.brackets) {
      b.floor = r.f64();
      b.cap = r.f64();
      b.rate = r.f64();
      b.deduction = r.f64();
      b.max_leverage = r.f64();
    }
    m.fee_in_mm = r.f64();
    m.max_leverage = r.f64();
    m.representative_notional = r.f64();
    m.inverse = r.boolean();
    const std::int32_t f = r.i32();
    if (f != static_cast<std::int32_t>(Formula::generic) && f != static_cast<std::int32_t>(Formula::mm_at_entry))
      r.fail("unknown mechanics formula " + std::to_string(f));
    m.formula = static_cast<Formula>(f);
    v.prior_long = r.f64s(kMaxTiers);
    v.prior_short = r.f64s(kMaxTiers);
    c.venues.push_back(std::move(v));
  }
  if (!(c.max_bins > 0)) r.fail("max_bins must be positive");
  return c;
}

bool finite_all(const std::vector<double>& v) {
  for (double x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

bool zero_bits(double x) noexcept {
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b == 0;
}

}  // namespace

void SideBook::save(Writer& w, const PriceGrid& g) const {
  const auto n = static_cast<std::size_t>(g.n);
  w.f64s(ratio_);
  w.f64s(w_);
  w.f64s(tot_);
  w.f64s(consumed_);
  w.f64(expected_usd_);
  (void)n;
  for (std::size_t t = 0; t < tiers(); ++t) {
    // Only the occupied entry range: D is exactly zero outside [lo, hi].
    w.i64(lo_[t]);
    w.i64(hi_[t]);
    if (!empty_tier(t))
      w.f64_span(row(t) + (lo_[t] - ek0_), static_cast<std::size_t>(hi_[t] - lo_[t] + 1));
  }
  // The map is stored, not rebuilt: it is accumulated incrementally, and a rebuild
  // would differ in the last bits (the round trip must be exact).
  std::size_t a = 0, b = map_.size();
  while (a < b && zero_bits(map_[a])) ++a;
  while (b > a && zero_bits(map_[b - 1])) --b;
  w.u64(a);
  w.u64(b - a);
  w.f64_span(map_.data() + a, b - a);
  // BOOK 1.1: the entry window and the per-tier maps M_t (accumulated like the
  // map, so stored for the same reason), each trimmed to its non-zero span.
  w.i64(ek0_);
  w.i64(en_);
  for (std::size_t t = 0; t < tiers(); ++t) {
    const double* m = tmap_.data() + moff_[t];
    std::size_t ma = 0, mb = mlen_[t];
    while (ma < mb && zero_bits(m[ma])) ++ma;
    while (mb > ma && zero_bits(m[mb - 1])) --mb;
    w.u64(ma);
    w.u64(mb - ma);
    w.f64_span(m + ma, mb - ma);
  }
}

void SideBook::load(Reader& r, const PriceGrid& g) {
  // *this is a freshly constructed book (every tier empty); fill it in.
  const auto n = static_cast<std::size_t>(g.n);
  const std::size_t nt = tiers();
  auto ratio = r.f64s(kMaxTiers);
  auto w = r.f64s(kMaxTiers);
  auto tot = r.f64s(kMaxTiers);
  auto consumed = r.f64s(kMaxTiers);
  if (ratio.size() != nt || w.size() != nt || tot.size() != nt || consumed.size() != nt)
    r.fail("book arrays do not match the tier count");
  if (!finite_all(ratio) || !finite_all(w) || !finite_all(tot) || !finite_all(consumed))
    r.fail("non-finite value in a book");
  for (std::size_t t = 0; t < nt; ++t)
    if (!(ratio[t] > 0.0) || w[t] < 0.0) r.fail("book ratio or weight out of range");
  const double expected = r.f64();
  if (!std::isfinite(expected)) r.fail("non-finite expected_usd");
  // D is read per tier first and laid on the entry window once every range is known.
  std::vector<std::vector<double>> rows(nt);
  std::vector<std::int64_t> lo(lo_), hi(hi_);
  std::int64_t e_min = std::numeric_limits<std::int64_t>::max(), e_max = std::numeric_limits<std::int64_t>::min();
  for (std::size_t t = 0; t < nt; ++t) {
    const std::int64_t l = r.i64(), h = r.i64();
    if (l > h) continue;  // empty tier: keep the fresh book's sentinels
    if (l < g.k0 || h >= g.k0 + g.n) r.fail("tier range lies outside the grid");
    const auto len = static_cast<std::size_t>(h - l + 1);
    if (len > r.remaining() / 8) r.fail("tier range longer than the section");
    rows[t].resize(len);
    r.f64_span(rows[t].data(), len);
    for (std::size_t i = 0; i < len; ++i)
      if (!std::isfinite(rows[t][i])) r.fail("non-finite exposure");
    lo[t] = l;
    hi[t] = h;
    e_min = std::min(e_min, l);
    e_max = std::max(e_max, h);
  }
  const std::uint64_t a = r.u64(), len = r.u64();
  if (a > n || len > n - a) r.fail("map range lies outside the grid");
  std::vector<double> map(n, 0.0);
  r.f64_span(map.data() + a, static_cast<std::size_t>(len));
  for (double x : map)
    if (!std::isfinite(x)) r.fail("non-finite map value");
  const SideBook fresh = *this;  // restored if the tier maps fail to read
  // BOOK 1.1 appends the entry window and the tier maps; 1.0 has neither.
  const bool has_tier_maps = r.remaining() > 0;
  std::int64_t ek0 = e_min, en = e_min <= e_max ? e_max - e_min + 1 : 0;
  if (has_tier_maps) {
    ek0 = r.i64();
    en = r.i64();
    if (en < 0 || en > 4 * g.n + 1024 || (e_min <= e_max && (e_min < ek0 || e_max >= ek0 + en)))
      r.fail("entry window does not cover the book");
  }
  std::vector<double> d(nt * static_cast<std::size_t>(en), 0.0);
  for (std::size_t t = 0; t < nt; ++t)
    if (!rows[t].empty())
      std::copy(rows[t].begin(), rows[t].end(),
                d.begin() + static_cast<std::ptrdiff_t>(t * static_cast<std::size_t>(en)) + (lo[t] - ek0));
  // Validated: commit (nothing above changed *this).
  ratio_ = std::move(ratio);
  w_ = std::move(w);
  tot_ = std::move(tot);
  consumed_ = std::move(consumed);
  expected_usd_ = expected;
  map_ = std::move(map);
  lo_ = std::move(lo);
  hi_ = std::move(hi);
  rmin_ = *std::min_element(ratio_.begin(), ratio_.end());
  rmax_ = *std::max_element(ratio_.begin(), ratio_.end());
  d_ = std::move(d);
  ek0_ = ek0;
  en_ = en;
  // The Leverage Learner's openings book lives on the level grid; its contents
  // are restored by the learner's own section (fresh and empty without one).
  set_cross_distance(cross_distance_);
  o_.clear();
  ok0_ = 0;
  on_ = 0;
  map_sum_ = std::accumulate(map_.begin(), map_.end(), 0.0);
  layout_tier_maps(false);
  if (!has_tier_maps) {
    // A 1.0 snapshot: derive M_t from D (keeping the stored totals and map).
    const auto totals = tot_;
    rebuild_tier_maps(g);
    tot_ = totals;
    return;
  }
  try {
    for (std::size_t t = 0; t < nt; ++t) {
      const std::uint64_t ma = r.u64(), ml = r.u64();
      if (ma > mlen_[t] || ml > mlen_[t] - ma) r.fail("tier map range lies outside its window");
      double* m = tmap_.data() + moff_[t] + ma;
      r.f64_span(m, static_cast<std::size_t>(ml));
      for (std::size_t i = 0; i < ml; ++i)
        if (!std::isfinite(m[i])) r.fail("non-finite tier map value");
    }
  } catch (...) {
    *this = fresh;
    throw;
  }
}

void Engine::save_state(Writer& w) const {
  {
    auto s = w.section(kConf, 1, 0, true);
    write_config(w, cfg_);
  }
  {
    auto s = w.section(kGrid, 1, 0, true);
    w.f64(grid_.step);
    w.i64(grid_.k0);
    w.i64(grid_.n);
  }
  {
    auto s = w.section(kEngn, 1, 0, true);
    w.u64s(std::vector<std::uint64_t>(rejected_.begin(), rejected_.end()));
    w.i64(last_ts_);
    w.f64(ref_price_);
    w.u64(learn_.size());
    for (auto f : learn_) w.u8(f);
    w.u64s(recent_);
  }
  for (std::size_t i = 0; i < venues_.size(); ++i) {
    const VenueStats& s = venues_[i].stats;
    auto sec = w.section(kVenu, 1, 0, true);
    w.u32(static_cast<std::uint32_t>(i));
    w.u64(s.prices);
    w.u64(s.oi_updates);
    w.u64(s.liquidations);
    for (int k = 0; k < 2; ++k) {
      w.f64(s.observed_usd[k]);
      w.u64(s.observed_n[k]);
      w.u64(s.unexplained[k]);
    }
    w.f64(s.oi_base);
    w.f64(s.last_price);
    w.f64(s.min_price);
    w.f64(s.max_price);
    w.i64(s.last_ts);
    w.boolean(s.own_price);
  }
  for (std::size_t i = 0; i < venues_.size(); ++i) {
    for (int k = 0; k < 2; ++k) {
      auto sec = w.section(kBook, 1, 1, true);  // 1.1: tier maps appended (perf)
      w.u32(static_cast<std::uint32_t>(i));
      w.i8(static_cast<std::int8_t>(venues_[i].book[k].side()));
      venues_[i].book[k].save(w, grid_);
    }
  }
  save_learner_sections(w);
}

Engine Engine::load_state(Reader& r, bool config_only) {
  SectionHeader h;
  Reader body(nullptr, 0);
  if (!r.next_section(h, body) || h.tag != kConf) r.fail("the first section must be CONF");
  serial::check_version(h, 1);
  EngineConfig cfg = read_config(body);
  const EngineConfig stored = cfg;
  auto e = [&]() {
    try {
      return Engine(std::move(cfg));
    } catch (const std::invalid_argument& ex) {
      throw serial::SnapshotError(r.where() + ": invalid engine config: " + ex.what());
    }
  }();
  // The constructor renormalises the priors; keep the stored ones bit for bit.
  e.cfg_.venues = stored.venues;
  for (std::size_t i = 0; i < e.venues_.size(); ++i) {
    VenueState& v = e.venues_[i];
    v.config = stored.venues[i];
    v.book[0].set_weights(e.grid_, v.config.prior_long);
    v.book[1].set_weights(e.grid_, v.config.prior_short);
  }
  if (config_only) {
    // Learner sections may carry configuration too (e.g. the cascade's options).
    while (r.next_section(h, body)) e.load_learner_section(h, body, true);
    return e;
  }

  const std::size_t nv = e.venues_.size();
  bool have_grid = false, have_engn = false;
  std::vector<std::uint8_t> have_venue(nv, 0), have_book(2 * nv, 0);
  while (r.next_section(h, body)) {
    if (h.tag == kGrid) {
      serial::check_version(h, 1);
      if (have_grid) body.fail("repeated");
      const double step = body.f64();
      const std::int64_t k0 = body.i64(), n = body.i64();
      if (!(step == e.cfg_.step) || k0 < 0 || n < 0 || n > e.cfg_.max_bins || k0 > (std::int64_t{1} << 52))
        body.fail("grid out of range");
      e.grid_.k0 = k0;
      e.grid_.n = n;
      have_grid = true;
    } else if (h.tag == kEngn) {
      serial::check_version(h, 1);
      const auto rej = body.u64s(1024);
      // Older snapshots know fewer reasons (new ones are appended): the rest stay 0.
      // Reasons a newer minor version added are dropped.
      for (std::size_t i = 0; i < rej.size() && i < e.rejected_.size(); ++i) e.rejected_[i] = rej[i];
      e.last_ts_ = body.i64();
      e.ref_price_ = body.f64();
      if (!(std::isfinite(e.ref_price_) && e.ref_price_ >= 0.0)) body.fail("reference price out of range");
      if (body.u64() != nv) body.fail("learn flags do not match the venue count");
      for (std::size_t i = 0; i < nv; ++i) e.learn_[i] = body.boolean() ? 1 : 0;
      auto recent = body.u64s(1u << 20);
      if (recent.size() != e.recent_.size()) body.fail("duplicate filter size does not match");
      e.recent_ = std::move(recent);
      have_engn = true;
    } else if (h.tag == kVenu) {
      serial::check_version(h, 1);
      const std::size_t i = body.u32();
      if (i >= nv || have_venue[i]) body.fail("venue slot out of range or repeated");
      VenueStats& s = e.venues_[i].stats;
      s.prices = body.u64();
      s.oi_updates = body.u64();
      s.liquidations = body.u64();
      for (int k = 0; k < 2; ++k) {
        s.observed_usd[k] = body.f64();
        s.observed_n[k] = body.u64();
        s.unexplained[k] = body.u64();
      }
      s.oi_base = body.f64();
      s.last_price = body.f64();
      s.min_price = body.f64();
      s.max_price = body.f64();
      s.last_ts = body.i64();
      s.own_price = body.boolean();
      for (double x : {s.observed_usd[0], s.observed_usd[1], s.oi_base, s.last_price, s.min_price, s.max_price})
        if (!(std::isfinite(x) && x >= 0.0)) body.fail("venue statistics out of range");
      have_venue[i] = 1;
    } else if (h.tag == kBook) {
      serial::check_version(h, 1);
      if (!have_grid) body.fail("BOOK before GRID");
      const std::size_t i = body.u32();
      if (i >= nv) body.fail("venue slot out of range");
      const std::int8_t side = body.i8();
      if (side != static_cast<std::int8_t>(Side::long_) && side != static_cast<std::int8_t>(Side::short_))
        body.fail("unknown book side");
      const auto k = static_cast<std::size_t>(side_index(static_cast<Side>(side)));
      if (have_book[2 * i + k]) body.fail("repeated book");
      e.venues_[i].book[k].load(body, e.grid_);
      have_book[2 * i + k] = 1;
    } else if (!e.load_learner_section(h, body, false)) {
      if (h.required())
        body.fail("required section unknown to this version of heatcore (written by a newer version?)");
      // An optional section from a newer minor version: skipped.
    }
  }
  if (!have_grid || !have_engn) r.fail("missing GRID or ENGN section");
  for (std::size_t i = 0; i < nv; ++i)
    if (!have_venue[i] || !have_book[2 * i] || !have_book[2 * i + 1]) r.fail("missing venue or book section");
  return e;
}

// ---- Learner state ---------------------------------------------------------------
// Each learner owns one section: a new 4-character tag, version 1.0, its own
// save/load that append fields at the end in later minor versions. Add one
// block to each function below (CASC is the worked example). Mark the section
// required only if an engine loaded without it would be wrong rather than merely
// less trained (an older heatcore then refuses the snapshot instead of silently
// dropping the state). A snapshot from before the learner existed has no
// section: the learner keeps its freshly constructed (prior) state.

namespace {

constexpr std::uint32_t kCasc = serial::tag("CASC");
constexpr std::uint32_t kCalb = serial::tag("CALB");  // [calibrator]
// Leverage Learner switched off (EngineConfig::learn_mix = false). Written only
// then, and required: a reader that does not know it would let the mixes learn.
constexpr std::uint32_t kLmix = serial::tag("LMIX");

void write_cascade_config(Writer& w, const CascadeConfig& c) {
  w.i64(c.gap_ms);
  for (double x : {c.horizon_s, c.record_every_s, c.half_life, c.calibration_half_life, c.vol_half_life_s,
                   c.smooth_frac, c.min_share, c.max_distance, c.prior_exponent, c.prior_scale, c.prior_residual,
                   c.prior_fraction, c.prior_level_time_s, c.prior_weight, c.prior_vol_annual})
    w.f64(x);
  w.u64(c.history);
}

CascadeConfig read_cascade_config(Reader& r) {
  CascadeConfig c;
  c.gap_ms = r.i64();
  for (double* x : {&c.horizon_s, &c.record_every_s, &c.half_life, &c.calibration_half_life, &c.vol_half_life_s,
                    &c.smooth_frac, &c.min_share, &c.max_distance, &c.prior_exponent, &c.prior_scale,
                    &c.prior_residual, &c.prior_fraction, &c.prior_level_time_s, &c.prior_weight,
                    &c.prior_vol_annual})
    *x = r.f64();
  const std::uint64_t h = r.u64();
  if (h > 1'000'000) r.fail("cascade history out of range");
  c.history = static_cast<std::size_t>(h);
  return c;
}

template <std::size_t N>
void write_array(Writer& w, const std::array<double, N>& a) {
  w.f64_span(a.data(), N);
}
template <std::size_t N>
void read_array(Reader& r, std::array<double, N>& a) {
  r.f64_span(a.data(), N);
}

void write_chain(Writer& w, const ChainRecord& c) {
  w.i64(c.start_ts);
  w.i64(c.end_ts);
  w.i8(static_cast<std::int8_t>(c.side));
  w.f64(c.start_price);
  w.f64(c.extreme_price);
  w.f64(c.notional);
  w.u64(c.events);
  w.i32(c.n_levels);
  w.i32(c.reached);
  write_array(w, c.level_price);
  write_array(w, c.level_exposure);
  write_array(w, c.level_notional);
  write_array(w, c.level_end);
  for (auto t : c.level_ts) w.i64(t);
}

Side read_side(Reader& r) {
  const std::int8_t s = r.i8();
  if (s != 0 && s != 1 && s != -1) r.fail("side out of range");
  return static_cast<Side>(s);
}

int read_level_count(Reader& r) {
  const std::int32_t n = r.i32();
  if (n < 0 || n > kMaxCascadeLevels) r.fail("level count out of range");
  return n;
}

ChainRecord read_chain(Reader& r) {
  ChainRecord c;
  c.start_ts = r.i64();
  c.end_ts = r.i64();
  c.side = read_side(r);
  c.start_price = r.f64();
  c.extreme_price = r.f64();
  c.notional = r.f64();
  c.events = r.u64();
  c.n_levels = read_level_count(r);
  c.reached = read_level_count(r);
  read_array(r, c.level_price);
  read_array(r, c.level_exposure);
  read_array(r, c.level_notional);
  read_array(r, c.level_end);
  for (auto& t : c.level_ts) t = r.i64();
  return c;
}

}  // namespace

void CascadeModel::save(Writer& w) const {
  for (const LevelStats& s : lv_)
    for (double x : {s.n_impact, s.mx, s.my, s.mxx, s.mxy, s.myy, s.n_fraction, s.f_num, s.f_den, s.n_time,
                     s.log_time, s.platt_a, s.platt_b, s.h00, s.h01, s.h11, s.n_resolved})
      w.f64(x);
  for (std::size_t k = 0; k < 2; ++k) {
    write_chain(w, open_[k]);
    w.f64(seg_q_[k]);
    w.f64(seg_from_[k]);
    w.i64(seg_ts_[k]);
  }
  // Only the used part of the chain ring: it fills from slot 0 until it wraps.
  const std::size_t used = history_size();
  w.u64(ring_.size());
  w.u64(used);
  for (std::size_t i = 0; i < used; ++i) write_chain(w, ring_[i]);
  w.u64(ring_next_);
  w.u64(chains_total_);
  w.u64(pending_.size());
  for (const Pending& p : pending_) {
    w.boolean(p.live);
    w.i64(p.ts);
    w.i8(static_cast<std::int8_t>(p.side));
    w.i32(p.n);
    w.f64(p.extreme);
    write_array(w, p.price);
    write_array(w, p.raw);
  }
  w.i64(last_record_ts_);
  w.boolean(recorded_any_);
  w.u64(resolved_);
  w.u64(dropped_);
  w.u64(last_.size());
  for (const VenuePrice& v : last_) {
    w.i64(v.ts);
    w.f64(v.price);
  }
  w.f64(vol_r2_);
  w.f64(vol_dt_);
  // ---- 1.1: consensus price, per-level track records and Platt windows, the
  // candidates each pending forecast was issued with.
  w.f64(consensus_);
  w.u64(window_);
  for (std::size_t li = 1; li < rec_.size(); ++li) {
    const LevelRecord& c = rec_[li];
    for (double x : {c.n, c.base, c.e_raw, c.e_platt, c.e_base, c.e_issued, c.d_platt, c.d_platt2, c.d_base, c.d_base2})
      w.f64(x);
    w.u64(c.since_fit);
    w.u64(c.stored);
    w.u64(c.next);
    const std::size_t off = (li - 1) * window_;
    w.f64_span(win_x_.data() + off, static_cast<std::size_t>(c.stored));
    w.f64_span(win_y_.data() + off, static_cast<std::size_t>(c.stored));
  }
  for (const Pending& p : pending_) {
    write_array(w, p.platt);
    write_array(w, p.base);
    write_array(w, p.issued);
  }
  // ---- 1.2: the chain impact law (tick pipeline and grid sums).
  w.i64(tick_ts_);
  w.f64(tick0_px_);
  w.boolean(interval_open_);
  for (std::size_t k = 0; k < 2; ++k) {
    w.f64(q_tick_[k]);
    w.i64(chain_tick_[k]);
    w.f64(iv_q0_[k]);
    w.f64(iv_q1_[k]);
  }
  write_array(w, imp_ff_);
  write_array(w, imp_fr_);
  w.f64(imp_rr_);
  w.f64(imp_n_);
  w.f64(imp_count_);
  // ---- 1.3: first-liquidation offsets of the current tick, the waiting interval's admission.
  for (std::size_t k = 0; k < 2; ++k) {
    w.i64(first_off_[k]);
    w.boolean(iv_ok_[k]);
  }
  // ---- 1.4: the volatility sums' clock.
  w.i64(vol_ts_);
}

void CascadeModel::load(Reader& r, int minor) {
  CascadeModel m = *this;  // fill a copy: *this stays unchanged if the bytes are bad
  for (LevelStats& s : m.lv_)
    for (double* x : {&s.n_impact, &s.mx, &s.my, &s.mxx, &s.mxy, &s.myy, &s.n_fraction, &s.f_num, &s.f_den,
                      &s.n_time, &s.log_time, &s.platt_a, &s.platt_b, &s.h00, &s.h01, &s.h11, &s.n_resolved})
      *x = r.f64();
  for (std::size_t k = 0; k < 2; ++k) {
    m.open_[k] = read_chain(r);
    m.seg_q_[k] = r.f64();
    m.seg_from_[k] = r.f64();
    m.seg_ts_[k] = r.i64();
  }
  if (r.u64() != m.ring_.size()) r.fail("chain history size does not match the config");
  const std::uint64_t used = r.u64();
  if (used > m.ring_.size()) r.fail("chain history count out of range");
  for (std::size_t i = 0; i < used; ++i) m.ring_[i] = read_chain(r);
  m.ring_next_ = r.u64();
  m.chains_total_ = r.u64();
  if (m.ring_next_ >= m.ring_.size() || std::min<std::uint64_t>(m.chains_total_, m.ring_.size()) != used)
    r.fail("chain history position out of range");
  if (r.u64() != m.pending_.size()) r.fail("pending forecast capacity does not match the config");
  for (Pending& p : m.pending_) {
    p.live = r.boolean();
    p.ts = r.i64();
    p.side = read_side(r);
    p.n = read_level_count(r);
    p.extreme = r.f64();
    read_array(r, p.price);
    read_array(r, p.raw);
  }
  m.last_record_ts_ = r.i64();
  m.recorded_any_ = r.boolean();
  m.resolved_ = r.u64();
  m.dropped_ = r.u64();
  if (r.u64() != m.last_.size()) r.fail("venue count does not match");
  for (VenuePrice& v : m.last_) {
    v.ts = r.i64();
    v.price = r.f64();
  }
  m.vol_r2_ = r.f64();
  m.vol_dt_ = r.f64();
  if (minor >= 1) {
    m.consensus_ = r.f64();
    if (!(m.consensus_ >= 0.0) || !std::isfinite(m.consensus_)) r.fail("consensus price out of range");
    if (r.u64() != m.window_) r.fail("calibration window does not match the config");
    for (std::size_t li = 1; li < m.rec_.size(); ++li) {
      LevelRecord& c = m.rec_[li];
      for (double* x : {&c.n, &c.base, &c.e_raw, &c.e_platt, &c.e_base, &c.e_issued, &c.d_platt, &c.d_platt2,
                        &c.d_base, &c.d_base2}) {
        *x = r.f64();
        if (!std::isfinite(*x) || *x < -1.0) r.fail("track record out of range");
      }
      c.since_fit = r.u64();
      c.stored = r.u64();
      c.next = r.u64();
      if (c.stored > m.window_ || c.next >= m.window_ || (c.stored < m.window_ && c.next != c.stored) ||
          c.since_fit > c.stored)
        r.fail("calibration window position out of range");
      const std::size_t off = (li - 1) * m.window_;
      r.f64_span(m.win_x_.data() + off, static_cast<std::size_t>(c.stored));
      r.f64_span(m.win_y_.data() + off, static_cast<std::size_t>(c.stored));
      for (std::size_t i = 0; i < c.stored; ++i)
        if (!std::isfinite(m.win_x_[off + i]) || (m.win_y_[off + i] != 0.0 && m.win_y_[off + i] != 1.0))
          r.fail("calibration window entry out of range");
    }
    for (Pending& p : m.pending_) {
      read_array(r, p.platt);
      read_array(r, p.base);
      read_array(r, p.issued);
    }
  } else {
    // 1.0: no track records; pending forecasts score every candidate as raw.
    for (Pending& p : m.pending_) p.platt = p.base = p.issued = p.raw;
  }
  if (minor >= 2) {
    auto finite_nonneg = [&r](double x, const char* what) {
      if (!(x >= 0.0) || !std::isfinite(x)) r.fail(what);
      return x;
    };
    m.tick_ts_ = r.i64();
    m.tick0_px_ = finite_nonneg(r.f64(), "impact tick price out of range");
    m.interval_open_ = r.boolean();
    for (std::size_t k = 0; k < 2; ++k) {
      m.q_tick_[k] = finite_nonneg(r.f64(), "impact notional out of range");
      m.chain_tick_[k] = r.i64();
      m.iv_q0_[k] = finite_nonneg(r.f64(), "impact notional out of range");
      m.iv_q1_[k] = finite_nonneg(r.f64(), "impact notional out of range");
    }
    read_array(r, m.imp_ff_);
    read_array(r, m.imp_fr_);
    for (std::size_t i = 0; i < m.imp_ff_.size(); ++i) {
      finite_nonneg(m.imp_ff_[i], "impact sums out of range");
      if (!std::isfinite(m.imp_fr_[i])) r.fail("impact sums out of range");
    }
    m.imp_rr_ = finite_nonneg(r.f64(), "impact sums out of range");
    m.imp_n_ = finite_nonneg(r.f64(), "impact sums out of range");
    m.imp_count_ = finite_nonneg(r.f64(), "impact sums out of range");
  }
  if (minor >= 3) {
    for (std::size_t k = 0; k < 2; ++k) {
      m.first_off_[k] = r.i64();
      if (m.first_off_[k] < -1) r.fail("impact tick offset out of range");
      m.iv_ok_[k] = r.boolean();
    }
  } else if (minor == 2) {
    m.iv_ok_ = {true, true};  // 1.2 admitted every tick
  }
  if (minor >= 4) {
    m.vol_ts_ = r.i64();
    if (m.vol_ts_ < 0) r.fail("volatility time out of range");
  } else {
    // Before 1.4 the sums had no clock: they forget from the latest venue mark on.
    for (const VenuePrice& v : m.last_) m.vol_ts_ = std::max(m.vol_ts_, v.ts);
  }
  *this = std::move(m);
}


// ---- FCST: the horizon forecast (forecast.hpp) ----
// ForecastConfig, then the Forecaster's state: engine-wide volatility, anchor
// prices, the checkpoint ring and calibration histogram, the survival it
// implies, the lagged reach, the refresh clock; then each venue's
// VenueForecastState. Every field is stored (also the caches a rebuild would
// reproduce: the kernels, the survival), so a load gives the same bits.

namespace {

constexpr std::uint32_t kFcst = serial::tag("FCST");
constexpr std::size_t kMaxLagBins = std::size_t{1} << 26;  // lagged windows: a grid's worth at most
constexpr std::int64_t kMaxBinIndex = std::int64_t{1} << 52;

void write_forecast_config(Writer& w, const ForecastConfig& c) {
  for (double x : {c.vol_tau_s, c.vol_min_dt_s, c.vol_prior_annual, c.ref_horizon_s, c.checkpoint_every_s,
                   c.calib_forget, c.calib_prior_n, c.burst_tau_s, c.base_tau_s, c.em_every_s, c.em_map_horizon_s,
                   c.em_tau_s, c.em_prior_n, c.reach_prior, c.cont_prior, c.background_prior, c.offset_prior_n,
                   c.offset_prior_bins, c.offset_forget, c.shift_forget, c.shift_prior_nats, c.liq_anchor_after_s})
    w.f64(x);
  w.boolean(c.learn);
}

ForecastConfig read_forecast_config(Reader& r) {
  ForecastConfig c;
  for (double* x : {&c.vol_tau_s, &c.vol_min_dt_s, &c.vol_prior_annual, &c.ref_horizon_s, &c.checkpoint_every_s,
                    &c.calib_forget, &c.calib_prior_n, &c.burst_tau_s, &c.base_tau_s, &c.em_every_s,
                    &c.em_map_horizon_s, &c.em_tau_s, &c.em_prior_n, &c.reach_prior, &c.cont_prior,
                    &c.background_prior, &c.offset_prior_n, &c.offset_prior_bins, &c.offset_forget, &c.shift_forget,
                    &c.shift_prior_nats, &c.liq_anchor_after_s}) {
    *x = r.f64();
    if (!std::isfinite(*x)) r.fail("non-finite forecast setting");
  }
  // The refresh clock is kept in int64 milliseconds.
  if (!(c.em_every_s <= 1e9)) r.fail("forecast refresh interval out of range");
  c.learn = r.boolean();
  return c;  // the Forecaster's constructor checks the rest
}

// A finite double, optionally >= 0.
double read_finite(Reader& r, bool non_negative = false) {
  const double x = r.f64();
  if (!std::isfinite(x) || (non_negative && x < 0.0)) r.fail("forecast value out of range");
  return x;
}

void read_fixed(Reader& r, std::vector<double>& v, std::size_t n, bool non_negative) {
  auto x = r.f64s(n);
  if (x.size() != n) r.fail("forecast array has the wrong size");
  for (double y : x)
    if (!std::isfinite(y) || (non_negative && y < 0.0)) r.fail("forecast array value out of range");
  v = std::move(x);
}

}  // namespace

void Forecaster::save(Writer& w) const {
  for (double x : {var_rate_, sample_ts_, sample_log_p_, last_price_, last_price_ts_, last_liq_price_, last_liq_ts_,
                   now_s_})
    w.f64(x);
  w.boolean(have_sample_);
  w.u64(ring_.size());
  for (const Checkpoint& c : ring_)
    for (double x : {c.ts, c.log_p, c.sd, c.up, c.down}) w.f64(x);
  w.i32(ring_head_);
  w.i32(ring_size_);
  w.f64(last_checkpoint_ts_);
  w.f64s(calib_count_);
  w.f64s(surv_);
  w.f64(calib_n_);
  w.f64(mean_z_);
  w.f64s(lag_reach_);
  w.i64(lag_k0_);
  w.i64(next_refresh_ms_);
  w.f64(refresh_ts_);
  w.boolean(refreshed_);
  w.u64(venues_.size());
  for (const VenueForecastState& v : venues_)
    for (int s = 0; s < 2; ++s) {
      for (double x : {v.burst[s], v.burst_ts[s], v.anchor[s], v.anchor_ts[s], v.snap_anchor[s], v.snap_anchor_ts[s],
                       v.base[s], v.base_ts[s], v.num_map[s], v.den_map[s], v.num_cont[s], v.den_cont[s], v.num_bg[s],
                       v.den_bg[s], v.events[s], v.map_rate[s], v.a[s], v.b[s], v.c[s], v.kernel_mean[s],
                       v.kernel_var[s]})
        w.f64(x);
      w.f64s(v.lagged[s]);
      w.i64(v.lagged_k0[s]);
      w.u64(v.unexplained[s]);
      w.i32(v.shift[s]);
      w.f64s(v.shift_score[s]);
      w.f64s(v.offsets[s]);
      w.f64s(v.kernel[s]);
    }
}

void Forecaster::load(Reader& r, double step) {
  Forecaster f = *this;  // fill a copy: *this stays unchanged if the bytes are bad
  // Prices as the engine accepts them: binnable on the grid (0 = none yet).
  auto price = [&r, step]() {
    const double p = read_finite(r, true);
    if (p / step > 1e15) r.fail("forecast price out of range");
    return p;
  };
  // The variance rate is an EWMA of the prior and of clamped returns (|r| <= ln 2 over
  // at least max(vol_min_dt_s, 1 ms)): it cannot leave that range.
  const ForecastConfig& c = f.cfg_;
  const double var_max = std::max(c.vol_prior_annual * c.vol_prior_annual / (365.0 * 86400.0),
                                  std::log(2.0) * std::log(2.0) / std::max(c.vol_min_dt_s, 1e-3)) * (1.0 + 1e-9);
  f.var_rate_ = read_finite(r, true);
  if (!(f.var_rate_ > 0.0 && f.var_rate_ <= var_max)) r.fail("forecast variance rate out of range");
  f.sample_ts_ = read_finite(r);
  f.sample_log_p_ = read_finite(r);
  f.last_price_ = price();
  f.last_price_ts_ = read_finite(r);
  f.last_liq_price_ = price();
  f.last_liq_ts_ = read_finite(r);
  f.now_s_ = read_finite(r);
  f.have_sample_ = r.boolean();
  if (r.u64() != f.ring_.size()) r.fail("checkpoint ring size does not match");
  for (Checkpoint& k : f.ring_) {
    k.ts = read_finite(r);
    k.log_p = read_finite(r);
    k.sd = read_finite(r, true);
    k.up = read_finite(r, true);
    k.down = read_finite(r, true);
    // sd is a past sqrt(variance rate); a finished checkpoint's z = move / sd is binned as an int.
    if (k.sd > std::sqrt(var_max) || std::max(k.up, k.down) > 1e7 * k.sd)
      r.fail("forecast checkpoint out of range");
  }
  f.ring_head_ = r.i32();
  f.ring_size_ = r.i32();
  if (f.ring_head_ < 0 || f.ring_head_ >= kMaxCheckpoints || f.ring_size_ < 0 || f.ring_size_ > kMaxCheckpoints)
    r.fail("checkpoint ring position out of range");
  f.last_checkpoint_ts_ = read_finite(r);
  read_fixed(r, f.calib_count_, kCalibBins + 1, true);
  read_fixed(r, f.surv_, kCalibBins + 1, true);
  f.calib_n_ = read_finite(r, true);
  f.mean_z_ = read_finite(r, true);
  f.lag_reach_ = r.f64s(kMaxLagBins);
  for (double x : f.lag_reach_)
    if (!(std::isfinite(x) && x >= 0.0)) r.fail("lagged reach out of range");
  f.lag_k0_ = r.i64();
  if (f.lag_k0_ < 0 || f.lag_k0_ > kMaxBinIndex) r.fail("lagged reach window out of range");
  f.next_refresh_ms_ = r.i64();
  f.refresh_ts_ = read_finite(r);
  f.refreshed_ = r.boolean();
  if (r.u64() != f.venues_.size()) r.fail("forecast venue count does not match");
  for (VenueForecastState& v : f.venues_)
    for (int s = 0; s < 2; ++s) {
      v.burst[s] = read_finite(r, true);
      v.burst_ts[s] = read_finite(r);
      v.anchor[s] = price();
      v.anchor_ts[s] = read_finite(r);
      v.snap_anchor[s] = price();
      v.snap_anchor_ts[s] = read_finite(r);
      v.base[s] = read_finite(r, true);
      v.base_ts[s] = read_finite(r);
      for (double* x : {&v.num_map[s], &v.den_map[s], &v.num_cont[s], &v.den_cont[s], &v.num_bg[s], &v.den_bg[s],
                        &v.events[s], &v.map_rate[s]})
        *x = read_finite(r, true);
      for (double* x : {&v.a[s], &v.b[s], &v.c[s]}) {
        *x = read_finite(r, true);
        if (!(*x > 0.0)) r.fail("forecast scale out of range");
      }
      v.kernel_mean[s] = read_finite(r);
      v.kernel_var[s] = read_finite(r, true);
      if (std::fabs(v.kernel_mean[s]) > kOffsetHalf || v.kernel_var[s] > double{kOffsetHalf} * kOffsetHalf)
        r.fail("continuation kernel moments out of range");
      v.lagged[s] = r.f64s(kMaxLagBins);
      for (double x : v.lagged[s])
        if (!(std::isfinite(x) && x >= 0.0)) r.fail("lagged map out of range");
      v.lagged_k0[s] = r.i64();
      if (v.lagged_k0[s] < 0 || v.lagged_k0[s] > kMaxBinIndex) r.fail("lagged map window out of range");
      v.unexplained[s] = r.u64();
      v.shift[s] = r.i32();
      if (v.shift[s] < -kShiftHalf || v.shift[s] > kShiftHalf) r.fail("map shift out of range");
      read_fixed(r, v.shift_score[s], 2 * kShiftHalf + 1, false);
      read_fixed(r, v.offsets[s], 2 * kOffsetHalf + 1, true);
      read_fixed(r, v.kernel[s], 2 * kOffsetHalf + 1, true);
    }
  *this = std::move(f);
}

// ---- Leverage Learner (LLRN): config, venue cross priors, every learner, openings books ----
namespace {

constexpr std::uint32_t kLlrn = serial::tag("LLRN");

void write_learner_config(Writer& w, const LearnerConfig& c) {
  for (double x : {c.half_life_hours, c.lifetime_hours, c.lifetime_exponent, c.refresh_hours, c.kernel_bins,
                   c.kernel_frac, c.crossing_window_s, c.tier_smoothing, c.size_cap, c.prior_min, c.prior_max,
                   c.loglik_floor})
    w.f64(x);
  w.u64(c.buffer_events);
  w.u64(c.refresh_events);
  w.i32(c.em_iterations);
  w.u64(c.crossing_records);
  w.i64(c.sample_window_ms);
}

LearnerConfig read_learner_config(Reader& r) {
  LearnerConfig c;
  for (double* x : {&c.half_life_hours, &c.lifetime_hours, &c.lifetime_exponent, &c.refresh_hours, &c.kernel_bins,
                    &c.kernel_frac, &c.crossing_window_s, &c.tier_smoothing, &c.size_cap, &c.prior_min,
                    &c.prior_max, &c.loglik_floor})
    *x = r.f64();
  const std::uint64_t buf = r.u64(), ref = r.u64();
  c.em_iterations = r.i32();
  const std::uint64_t rec = r.u64();
  c.sample_window_ms = r.i64();
  if (buf == 0 || buf > (1u << 20) || ref == 0 || ref > (1u << 30) || rec == 0 || rec > (1u << 20))
    r.fail("learner buffer sizes out of range");
  // The learner keeps the crossing window in int64 milliseconds.
  if (!(std::fabs(c.crossing_window_s) <= 1e12)) r.fail("learner crossing window out of range");
  c.buffer_events = static_cast<std::size_t>(buf);
  c.refresh_events = static_cast<std::size_t>(ref);
  c.crossing_records = static_cast<std::size_t>(rec);
  return c;
}

// A vector whose size is fixed by the configuration: it must come back the same size.
void read_same(Reader& r, std::vector<double>& v, const char* what) {
  auto x = r.f64s(v.size());
  if (x.size() != v.size()) r.fail(std::string("learner ") + what + " size does not match");
  v = std::move(x);
}
void read_same(Reader& r, std::vector<std::int64_t>& v, const char* what) {
  auto x = r.i64s(v.size());
  if (x.size() != v.size()) r.fail(std::string("learner ") + what + " size does not match");
  v = std::move(x);
}

// Timestamps (ms) within +-2^62: the learner subtracts them, which must not overflow.
constexpr std::int64_t kMaxAbsTs = std::int64_t{1} << 62;
bool ts_ok(std::int64_t t) noexcept { return t >= -kMaxAbsTs && t <= kMaxAbsTs; }

}  // namespace

void LeverageLearner::save(Writer& w) const {
  w.f64(tau_ms_);
  w.f64(cross_);
  for (const auto* v : {&prior_, &u_, &mix_, &oi_mix_, &c_, &arch_, &pre_, &life_h_, &age_, &nbar_, &snap_c_,
                        &snap_d_, &x_lo_, &x_hi_, &x_usd_, &b_q_, &b_e_, &e_, &a_, &n_, &c_units_, &a_units_,
                        &sm_a_, &sm_c_, &bprior_, &wa_, &wc_})
    w.f64s(*v);
  w.i64s(x_ts_);
  w.i64s(b_ts_);
  for (double x : {s1_, s2_, sn_, oi_usd_, log_size_, kappa_, unit_, gbar_, loglik_sum_}) w.f64(x);
  for (std::int64_t x : {acc_ts_, last_oi_ts_, nbar_ts_, last_refresh_ts_}) w.i64(x);
  w.boolean(acc_started_);
  w.boolean(oi_seen_);
  for (std::uint64_t x : {static_cast<std::uint64_t>(x_head_), static_cast<std::uint64_t>(x_count_),
                          static_cast<std::uint64_t>(b_head_), static_cast<std::uint64_t>(b_count_), size_n_,
                          since_refresh_, loglik_n_})
    w.u64(x);
  const Diagnostics& d = diag_;
  for (std::uint64_t x : {d.n_events, d.unexplained, d.preexisting, d.sampled, d.clipped, d.refreshes, d.loglik_n})
    w.u64(x);
  for (double x : {d.effective_events, d.prior_strength, d.mean_event_usd, d.opening_rate_usd_h, d.loglik_sum})
    w.f64(x);
}

void LeverageLearner::load(Reader& r) {
  LeverageLearner m = *this;  // fill a copy: *this stays unchanged if the bytes are bad
  m.tau_ms_ = r.f64();
  m.cross_ = r.f64();
  const char* names[] = {"prior", "u", "mix", "oi_mix", "c", "arch", "pre", "life", "age", "nbar", "snap_c",
                         "snap_d", "x_lo", "x_hi", "x_usd", "b_q", "b_e", "e", "a", "n", "c_units", "a_units",
                         "sm_a", "sm_c", "bprior", "wa", "wc"};
  std::vector<double>* vs[] = {&m.prior_, &m.u_, &m.mix_, &m.oi_mix_, &m.c_, &m.arch_, &m.pre_, &m.life_h_,
                               &m.age_, &m.nbar_, &m.snap_c_, &m.snap_d_, &m.x_lo_, &m.x_hi_, &m.x_usd_, &m.b_q_,
                               &m.b_e_, &m.e_, &m.a_, &m.n_, &m.c_units_, &m.a_units_, &m.sm_a_, &m.sm_c_,
                               &m.bprior_, &m.wa_, &m.wc_};
  for (std::size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); ++i) {
    read_same(r, *vs[i], names[i]);
    if (!finite_all(*vs[i])) r.fail(std::string("non-finite learner ") + names[i]);
  }
  read_same(r, m.x_ts_, "x_ts");
  read_same(r, m.b_ts_, "b_ts");
  for (const auto* v : {&m.x_ts_, &m.b_ts_})
    for (std::int64_t t : *v)
      if (!ts_ok(t)) r.fail("learner timestamp out of range");
  if (!(m.tau_ms_ > 0.0) || !(m.cross_ >= 0.0 && m.cross_ <= 1.0)) r.fail("learner constants out of range");
  for (double* x : {&m.s1_, &m.s2_, &m.sn_, &m.oi_usd_, &m.log_size_, &m.kappa_, &m.unit_, &m.gbar_,
                    &m.loglik_sum_}) {
    *x = r.f64();
    if (!std::isfinite(*x)) r.fail("non-finite learner statistic");
  }
  for (std::int64_t* x : {&m.acc_ts_, &m.last_oi_ts_, &m.nbar_ts_, &m.last_refresh_ts_}) {
    *x = r.i64();
    if (!ts_ok(*x)) r.fail("learner timestamp out of range");
  }
  m.acc_started_ = r.boolean();
  m.oi_seen_ = r.boolean();
  const std::uint64_t xh = r.u64(), xc = r.u64(), bh = r.u64(), bc = r.u64();
  if (xh >= m.x_ts_.size() || xc > m.x_ts_.size() || bh >= m.b_ts_.size() || bc > m.b_ts_.size())
    r.fail("learner ring position out of range");
  m.x_head_ = static_cast<std::size_t>(xh);
  m.x_count_ = static_cast<std::size_t>(xc);
  m.b_head_ = static_cast<std::size_t>(bh);
  m.b_count_ = static_cast<std::size_t>(bc);
  m.size_n_ = r.u64();
  m.since_refresh_ = r.u64();
  m.loglik_n_ = r.u64();
  Diagnostics& d = m.diag_;
  for (std::uint64_t* x : {&d.n_events, &d.unexplained, &d.preexisting, &d.sampled, &d.clipped, &d.refreshes,
                           &d.loglik_n})
    *x = r.u64();
  for (double* x : {&d.effective_events, &d.prior_strength, &d.mean_event_usd, &d.opening_rate_usd_h,
                    &d.loglik_sum}) {
    *x = r.f64();
    if (!std::isfinite(*x)) r.fail("non-finite learner diagnostic");
  }
  *this = std::move(m);
}

void LeverageLearner::save_v1(Writer& w) const {
  w.f64s(snap_all_);
  w.f64s(x_all_);
  w.f64s(b_r_);
  w.i64(last_age_ts_);
}

void LeverageLearner::load_v1(Reader& r) {
  LeverageLearner m = *this;
  read_same(r, m.snap_all_, "snap_all");
  read_same(r, m.x_all_, "x_all");
  read_same(r, m.b_r_, "b_r");
  for (const auto* v : {&m.snap_all_, &m.x_all_, &m.b_r_})
    if (!finite_all(*v)) r.fail("non-finite learner vintage state");
  m.last_age_ts_ = r.i64();
  if (!ts_ok(m.last_age_ts_)) r.fail("learner timestamp out of range");
  *this = std::move(m);
}

void LeverageLearner::upgrade_v0() noexcept {
  // Version 1.0 had one openings book, of the openings since the first reading
  // with no recency weight: both new views of it start as that book (the older
  // book stays in pre_, as it was).
  snap_all_ = snap_c_;
  x_all_ = x_usd_;
  b_r_ = b_e_;
  last_age_ts_ = last_oi_ts_;   // 1.0 aged the book at every reading
}

void SideBook::save_openings(Writer& w, const PriceGrid& g) const {
  // The all-vintage rows (0 .. 2T-1), as in version 1.0.
  const auto rows = static_cast<std::ptrdiff_t>(2 * tiers());
  w.f64(cross_distance_);
  w.f64(map_sum_);
  w.f64s(std::vector<double>(otot_.begin(), otot_.begin() + rows));
  w.f64s(std::vector<double>(oconsumed_usd_.begin(), oconsumed_usd_.begin() + rows));
  w.i64s(std::vector<std::int64_t>(olo_.begin(), olo_.begin() + rows));
  w.i64s(std::vector<std::int64_t>(ohi_.begin(), ohi_.begin() + rows));
  (void)g;
  for (std::size_t t = 0; t < static_cast<std::size_t>(rows); ++t) {
    if (olo_[t] > ohi_[t]) continue;  // empty rows are not written
    const double* row = orow(t) + (olo_[t] - ok0_);
    w.f64_span(row, static_cast<std::size_t>(ohi_[t] - olo_[t] + 1));
  }
}

void SideBook::save_recent_openings(Writer& w) const {
  const std::size_t nt = tiers();
  const auto b = static_cast<std::ptrdiff_t>(2 * nt);
  w.f64s(std::vector<double>(otot_.begin() + b, otot_.end()));
  w.f64s(std::vector<double>(oconsumed_usd_.begin() + b, oconsumed_usd_.end()));
  w.i64s(std::vector<std::int64_t>(olo_.begin() + b, olo_.end()));
  w.i64s(std::vector<std::int64_t>(ohi_.begin() + b, ohi_.end()));
  for (std::size_t t = 2 * nt; t < 4 * nt; ++t) {
    if (olo_[t] > ohi_[t]) continue;
    w.f64_span(orow(t) + (olo_[t] - ok0_), static_cast<std::size_t>(ohi_[t] - olo_[t] + 1));
  }
}

void SideBook::load_recent_openings(Reader& r) {
  const std::size_t nt = tiers(), rows = 2 * nt;
  auto otot = r.f64s(rows), ocons = r.f64s(rows);
  auto olo = r.i64s(rows), ohi = r.i64s(rows);
  if (otot.size() != rows || ocons.size() != rows || olo.size() != rows || ohi.size() != rows)
    r.fail("recent openings row count does not match");
  if (!finite_all(otot) || !finite_all(ocons)) r.fail("non-finite recent openings totals");
  std::vector<double> o(o_);
  for (std::size_t t = 0; t < rows; ++t) {
    double* row = o.data() + (rows + t) * static_cast<std::size_t>(on_);
    std::fill(row, row + on_, 0.0);
    if (olo[t] > ohi[t]) {
      olo[t] = SideBook::kEmptyLo;
      ohi[t] = SideBook::kEmptyHi;
      continue;
    }
    // Recent openings are a part of the all-vintage book: inside its row's range.
    if (olo[t] < olo_[t] || ohi[t] > ohi_[t]) r.fail("recent openings row outside its all-vintage row");
    const auto len = static_cast<std::size_t>(ohi[t] - olo[t] + 1);
    double* dst = row + (olo[t] - ok0_);
    r.f64_span(dst, len);
    for (std::size_t i = 0; i < len; ++i)
      if (!std::isfinite(dst[i])) r.fail("non-finite recent openings value");
  }
  std::copy(otot.begin(), otot.end(), otot_.begin() + static_cast<std::ptrdiff_t>(rows));
  std::copy(ocons.begin(), ocons.end(), oconsumed_usd_.begin() + static_cast<std::ptrdiff_t>(rows));
  std::copy(olo.begin(), olo.end(), olo_.begin() + static_cast<std::ptrdiff_t>(rows));
  std::copy(ohi.begin(), ohi.end(), ohi_.begin() + static_cast<std::ptrdiff_t>(rows));
  o_ = std::move(o);
}

void SideBook::load_openings(Reader& r, const PriceGrid& g) {
  const double dist = r.f64();
  const double msum = r.f64();
  if (!(std::isfinite(dist) && dist >= 1.0) || !std::isfinite(msum)) r.fail("openings book header out of range");
  const std::size_t rows = 2 * tiers();
  auto otot = r.f64s(rows), ocons = r.f64s(rows);
  auto olo = r.i64s(rows), ohi = r.i64s(rows);
  if (otot.size() != rows || ocons.size() != rows || olo.size() != rows || ohi.size() != rows)
    r.fail("openings book row count does not match");
  if (!finite_all(otot) || !finite_all(ocons)) r.fail("non-finite openings totals");
  // The window is the union of the stored rows' ranges (it grows again on demand).
  std::int64_t wlo = 0, whi = -1;
  bool any = false;
  for (std::size_t t = 0; t < rows; ++t) {
    if (olo[t] > ohi[t]) continue;
    if (olo[t] < g.k0 || ohi[t] >= g.k0 + g.n) r.fail("openings row outside the grid");
    wlo = any ? std::min(wlo, olo[t]) : olo[t];
    whi = any ? std::max(whi, ohi[t]) : ohi[t];
    any = true;
  }
  const std::int64_t wn = any ? whi - wlo + 1 : 0;
  std::vector<double> o(rows * static_cast<std::size_t>(wn), 0.0);
  for (std::size_t t = 0; t < rows; ++t) {
    if (olo[t] > ohi[t]) {
      // Empty: the fresh book's sentinels (any other empty range would let the
      // next opening stretch the row over bins outside the window).
      olo[t] = olo_[t];
      ohi[t] = ohi_[t];
      continue;
    }
    double* row = o.data() + t * static_cast<std::size_t>(wn) + static_cast<std::size_t>(olo[t] - wlo);
    const auto len = static_cast<std::size_t>(ohi[t] - olo[t] + 1);
    r.f64_span(row, len);
    for (std::size_t i = 0; i < len; ++i)
      if (!std::isfinite(row[i])) r.fail("non-finite openings value");
  }
  // The recency-weighted rows start as copies (version 1.0 had no older book in
  // the openings book, and no recency weights); load_recent_openings replaces them.
  o.resize(2 * o.size());
  std::copy_n(o.begin(), o.size() / 2, o.begin() + static_cast<std::ptrdiff_t>(o.size() / 2));
  for (auto* v : {&otot, &ocons}) v->insert(v->end(), v->begin(), v->end());
  for (auto* v : {&olo, &ohi}) v->insert(v->end(), v->begin(), v->end());
  set_cross_distance(dist);
  otot_ = std::move(otot);
  oconsumed_usd_ = std::move(ocons);
  olo_ = std::move(olo);
  ohi_ = std::move(ohi);
  o_ = std::move(o);
  ok0_ = wlo;
  on_ = wn;
  map_sum_ = msum;
}

void Engine::save_learner_sections(Writer& w) const {
  {  // [calibrator] settings, on/off, then every estimate
    auto s = w.section(kCalb, 1, 1, false);  // minor 1: the runs' marks, appended
    Calibrator::save_config(w, calib_.config());
    w.boolean(calibrating_);
    calib_.save(w);
  }
  {
    auto s = w.section(kCasc, 1, 4, false);  // cascade: config, then learned state (1.1: recalibration, 1.2-1.3: impact law, 1.4: vol clock)
    write_cascade_config(w, cfg_.cascade);
    cascade_.save(w);
  }
  {
    // horizon forecast: config, then state; 1.1 appends ForecastConfig::generative_map, closing_hazard
    auto s = w.section(kFcst, 1, 1, false);
    write_forecast_config(w, cfg_.forecast);
    fc_.save(w);
    w.boolean(cfg_.forecast.generative_map);
    w.boolean(cfg_.forecast.closing_hazard);
  }
  if (!cfg_.learn_mix) {
    auto s = w.section(kLmix, 1, 0, true);
    w.boolean(false);
  }
  {
    // Leverage Learner: config, cross priors, learners, openings; minor 1 appends
    // every learner's vintage state, then every book's recency-weighted rows.
    auto s = w.section(kLlrn, 1, 1, false);
    write_learner_config(w, cfg_.learner);
    w.u64(venues_.size());
    for (const auto& v : venues_) {
      w.f64(v.config.cross_share);
      w.f64(v.config.cross_distance);
    }
    for (const auto& l : learners_) l.save(w);
    for (const auto& v : venues_)
      for (const auto& b : v.book) b.save_openings(w, grid_);
    for (const auto& l : learners_) l.save_v1(w);
    for (const auto& v : venues_)
      for (const auto& b : v.book) b.save_recent_openings(w);
  }
}

bool Engine::load_learner_section(const SectionHeader& h, Reader& body, bool config_only) {
  if (h.tag == kCalb) {  // [calibrator]
    serial::check_version(h, 1);
    calib_.reset(Calibrator::load_config(body));
    calibrating_ = body.boolean();
    cfg_.calibrator = calib_.config();
    cfg_.calibrate = calibrating_;
    if (!config_only) calib_.load(body);
    return true;
  }
  if (h.tag == kLmix) {
    serial::check_version(h, 1);
    cfg_.learn_mix = body.boolean();
    return true;
  }
  if (h.tag == kCasc) {
    serial::check_version(h, 1);
    try {
      configure_cascade(read_cascade_config(body));
    } catch (const std::invalid_argument& e) {
      body.fail(std::string("invalid cascade config: ") + e.what());
    }
    if (!config_only) cascade_.load(body, h.minor);
    return true;
  }
  if (h.tag == kFcst) {
    serial::check_version(h, 1);
    ForecastConfig c = read_forecast_config(body);
    Forecaster f;
    try {
      f = Forecaster(c, venues_.size());
    } catch (const std::invalid_argument& e) {
      body.fail(std::string("invalid forecast config: ") + e.what());
    }
    f.load(body, cfg_.step);  // also with config_only: generative_map follows the state
    // Before 1.1 the forecast read the exposure book's map for every venue: an
    // older snapshot keeps that behaviour.
    c.generative_map = h.minor >= 1 ? body.boolean() : false;
    c.closing_hazard = h.minor >= 1 ? body.boolean() : false;
    if (config_only) f = Forecaster(c, venues_.size());
    fc_ = std::move(f);  // config and state together, once all read
    cfg_.forecast = c;
    return true;
  }
  if (h.tag == kLlrn) {
    serial::check_version(h, 1);
    LearnerConfig lc = read_learner_config(body);
    try {
      lc.validate();
    } catch (const std::invalid_argument& e) {
      body.fail(std::string("invalid learner config: ") + e.what());
    }
    if (body.u64() != venues_.size()) body.fail("learner venue count does not match");
    std::vector<double> share(venues_.size()), dist(venues_.size());
    for (std::size_t i = 0; i < venues_.size(); ++i) {
      share[i] = body.f64();
      dist[i] = body.f64();
      if (!(std::isfinite(share[i]) && share[i] >= 0.0 && share[i] <= 1.0 && std::isfinite(dist[i]) &&
            dist[i] >= 1.0))
        body.fail("cross-margin prior out of range");
    }
    // Rebuild the learners with the stored configuration, then fill their state.
    std::vector<LeverageLearner> fresh;
    fresh.reserve(learners_.size());
    for (std::size_t i = 0; i < venues_.size(); ++i) {
      const VenueConfig& vc = venues_[i].config;
      fresh.emplace_back(lc, vc.prior_long, cfg_.tiers, share[i]);
      fresh.emplace_back(lc, vc.prior_short, cfg_.tiers, share[i]);
    }
    if (!config_only) {
      for (auto& l : fresh) l.load(body);
      for (auto& v : venues_)
        for (auto& b : v.book) b.load_openings(body, grid_);
      if (h.minor >= 1) {
        for (auto& l : fresh) l.load_v1(body);
        for (auto& v : venues_)
          for (auto& b : v.book) b.load_recent_openings(body);
      } else {
        for (auto& l : fresh) l.upgrade_v0();
      }
    }
    cfg_.learner = lc;
    for (std::size_t i = 0; i < venues_.size(); ++i) {
      venues_[i].config.cross_share = cfg_.venues[i].cross_share = share[i];
      venues_[i].config.cross_distance = cfg_.venues[i].cross_distance = dist[i];
      if (config_only)
        for (auto& b : venues_[i].book) b.set_cross_distance(dist[i]);
    }
    learners_ = std::move(fresh);
    return true;
  }
  return false;
}

}  // namespace heatcore
