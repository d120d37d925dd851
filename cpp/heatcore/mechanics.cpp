#include "heatcore/mechanics.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace heatcore {

void Mechanics::validate() const {
  if (brackets.empty()) throw std::invalid_argument("mechanics: at least one bracket is required");
  double prev_cap = -1.0;
  for (const auto& b : brackets) {
    if (!(std::isfinite(b.floor) && std::isfinite(b.rate) && std::isfinite(b.deduction) &&
          std::isfinite(b.max_leverage) && !std::isnan(b.cap)))
      throw std::invalid_argument("mechanics: non-finite bracket field");
    if (b.rate < 0.0 || b.rate >= 1.0) throw std::invalid_argument("mechanics: bracket rate must be in [0, 1)");
    if (b.max_leverage < 1.0) throw std::invalid_argument("mechanics: bracket max_leverage must be >= 1");
    if (b.cap <= b.floor) throw std::invalid_argument("mechanics: bracket cap must exceed its floor");
    if (b.floor < prev_cap - 1e-9 * std::max(1.0, prev_cap))
      throw std::invalid_argument("mechanics: brackets must be sorted by notional and not overlap");
    prev_cap = b.cap;
  }
  if (!(fee_in_mm >= 0.0 && fee_in_mm < 0.1)) throw std::invalid_argument("mechanics: fee_in_mm must be in [0, 0.1)");
  if (!(max_leverage >= 1.0 && std::isfinite(max_leverage))) throw std::invalid_argument("mechanics: max_leverage must be >= 1");
  if (!(representative_notional > 0.0 && std::isfinite(representative_notional)))
    throw std::invalid_argument("mechanics: representative_notional must be positive");
}

const Bracket& Mechanics::bracket_for(double leverage) const {
  std::size_t chosen = 0;
  for (std::size_t i = 0; i < brackets.size(); ++i) {
    if (representative_notional >= brackets[i].floor) chosen = i;
  }
  while (chosen > 0 && brackets[chosen].max_leverage < leverage) --chosen;
  return brackets[chosen];
}

double Mechanics::liquidation_ratio(Side side, double leverage, double rate_scale) const {
  const Bracket& b = bracket_for(leverage);
  const double m = b.rate * rate_scale;
  // Deduction per unit notional, for a position of the representative size clipped
  // into its bracket (the deduction only exists for notionals above the floor).
  const double notional = std::clamp(representative_notional, std::max(b.floor, 1.0), b.cap);
  const double d = b.deduction * rate_scale / notional;
  const double f = fee_in_mm;
  const double inv_l = 1.0 / leverage;
  const bool is_long = side == Side::long_;
  double r;
  if (inverse) {
    // Coin-margined: margin and maintenance are in coin, so the move is in 1/price.
    r = is_long ? 1.0 / (1.0 + inv_l + d - m - f) : 1.0 / std::max(1e-6, 1.0 - inv_l - d + m + f);
  } else if (formula == Formula::mm_at_entry) {
    r = is_long ? 1.0 - inv_l - d + m + f : 1.0 + inv_l + d - m - f;
  } else {
    r = is_long ? (1.0 - inv_l - d) / (1.0 - m - f) : (1.0 + inv_l + d) / (1.0 + m + f);
  }
  // A long can never be liquidated at or below zero; keep the level on the grid.
  if (is_long) r = std::clamp(r, 0.01, 1.0);
  else r = std::max(r, 1.0);
  return r;
}

double Mechanics::bankruptcy_ratio(Side side, double leverage, bool inverse_contract) {
  const double inv_l = 1.0 / leverage;
  if (inverse_contract)
    return side == Side::long_ ? 1.0 / (1.0 + inv_l) : 1.0 / std::max(1e-6, 1.0 - inv_l);
  return side == Side::long_ ? std::max(0.01, 1.0 - inv_l) : 1.0 + inv_l;
}

}  // namespace heatcore
