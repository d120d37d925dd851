// Plain types shared by every part of the core: sides, event records and the
// reasons an input can be rejected. No behaviour lives here.
#pragma once

#include <array>
#include <cstdint>
#include <cstddef>

namespace heatcore {

// The side of the *liquidated position*. Longs liquidate below price, shorts above.
enum class Side : std::int8_t { none = 0, long_ = 1, short_ = -1 };

inline constexpr int side_index(Side s) noexcept { return s == Side::long_ ? 0 : 1; }

enum class EventKind : std::uint8_t { price = 0, open_interest = 1, liquidation = 2 };

// Which price a venue reports on its liquidation events (exchanges.md section 0).
enum class PriceKind : std::uint8_t {
  unknown = 0, bankruptcy = 1, order = 2, fill = 3, trade = 4, mark = 5
};

// One normalized event, laid out exactly like hc.EVENT_DTYPE (32 bytes, little-endian).
// `value` is the OI in USD for open-interest events and the notional in USD for
// liquidations; it is unused for prices.
struct Event {
  std::int64_t ts_ms;
  double price;
  double value;
  std::uint16_t venue;   // index into the registry's venue ids (hc.VENUES + user venues)
  std::uint8_t kind;     // EventKind
  std::int8_t side;      // +1 long, -1 short, 0 none
  std::uint8_t price_kind;  // PriceKind
  std::uint8_t flags;    // bit 0: the event comes from a sampled feed
  std::uint8_t reserved[2];
};
static_assert(sizeof(Event) == 32, "Event must match EVENT_DTYPE");

inline constexpr std::uint8_t kFlagSampled = 1;

// Why an input was refused. The engine counts each reason; a refused input
// never changes any other state.
enum class Reject : int {
  ok = -1,
  non_finite = 0,       // NaN or inf in price, size or time
  non_positive_price,
  non_positive_size,
  unknown_venue,
  unknown_side,
  unknown_kind,
  out_of_order,         // older than the newest accepted event by more than the tolerance
  no_price,             // OI reading before any price for the venue
  absurd_price,         // more than `max_price_jump` away from the venue's last price
  grid_limit,           // the price grid would have to grow beyond its bin limit
  // ---- persist: reasons added for issue 9 (append new reasons here, never reorder) ----
  absurd_size,          // a liquidation above the venue's open interest, or any size above 1e15 USD
  duplicate,            // identical to a recently accepted event (ts, venue, kind, side, price, value)
  count_
};
inline constexpr int kRejectReasons = static_cast<int>(Reject::count_);

inline const char* reject_name(Reject r) noexcept {
  switch (r) {
    case Reject::non_finite: return "non_finite";
    case Reject::non_positive_price: return "non_positive_price";
    case Reject::non_positive_size: return "non_positive_size";
    case Reject::unknown_venue: return "unknown_venue";
    case Reject::unknown_side: return "unknown_side";
    case Reject::unknown_kind: return "unknown_kind";
    case Reject::out_of_order: return "out_of_order";
    case Reject::no_price: return "no_price";
    case Reject::absurd_price: return "absurd_price";
    case Reject::grid_limit: return "grid_limit";
    case Reject::absurd_size: return "absurd_size";
    case Reject::duplicate: return "duplicate";
    default: return "ok";
  }
}

struct IngestCounts {
  std::uint64_t price = 0;
  std::uint64_t open_interest = 0;
  std::uint64_t liquidation = 0;
  std::array<std::uint64_t, kRejectReasons> rejected{};
  std::uint64_t rejected_total() const noexcept {
    std::uint64_t s = 0;
    for (auto r : rejected) s += r;
    return s;
  }
};

}  // namespace heatcore
