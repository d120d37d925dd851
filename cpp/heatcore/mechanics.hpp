// Venue liquidation mechanics: where a position opened at entry price EP with
// leverage L is liquidated. Every formula used here is scale-free in price for
// a fixed representative position notional, so each (venue, side, tier) reduces
// to one ratio LP / EP that the exposure book applies to entry prices.
#pragma once

#include <string>
#include <vector>

#include "heatcore/types.hpp"

namespace heatcore {

// One maintenance-margin bracket: positions with notional in [floor, cap) pay
// maintenance `rate * notional - deduction` and may use at most `max_leverage`.
struct Bracket {
  double floor = 0.0;
  double cap = 0.0;
  double rate = 0.004;
  double deduction = 0.0;
  double max_leverage = 125.0;
};

enum class Formula : int {
  // Maintenance evaluated at the liquidation price (Binance, OKX, Gate, Hyperliquid, ...):
  // long LP = (EP - (M + D)/Q) / (1 - m - f), short LP = (EP + (M + D)/Q) / (1 + m + f).
  generic = 0,
  // Maintenance evaluated at entry (Bybit's classic isolated formula):
  // long LP = EP - (IM - MM)/Q with MM = Q*EP*m - D (plus f*Q*EP when a close fee is counted).
  mm_at_entry = 1,
};

struct Mechanics {
  std::vector<Bracket> brackets{Bracket{0.0, 1e18, 0.004, 0.0, 125.0}};
  double fee_in_mm = 0.0;            // closing-fee rate the venue adds to maintenance
  double max_leverage = 125.0;
  double representative_notional = 10000.0;  // USD; picks the bracket for the map
  bool inverse = false;              // coin-margined contract
  Formula formula = Formula::generic;

  // Throws std::invalid_argument with a message naming the bad field.
  void validate() const;

  // The bracket a position at leverage L falls in: the representative notional's
  // bracket, unless that bracket does not allow L, in which case the largest
  // bracket that does (a position that large cannot carry that leverage).
  const Bracket& bracket_for(double leverage) const;

  // LP / EP for a position of the given side and leverage. `rate_scale` multiplies
  // the maintenance rate and deduction (the calibrator's correction; 1 = documented).
  double liquidation_ratio(Side side, double leverage, double rate_scale = 1.0) const;

  // Bankruptcy price / entry price (zero margin left).
  static double bankruptcy_ratio(Side side, double leverage, bool inverse);
};

}  // namespace heatcore
