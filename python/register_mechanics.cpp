#include "prelude.hpp"

#include "heatcore/mechanics.hpp"

namespace hc = heatcore;

void register_mechanics(py::module_& m) {
  py::class_<hc::Bracket>(m, "Bracket")
      .def(py::init([](double floor, double cap, double rate, double deduction, double max_leverage) {
             return hc::Bracket{floor, cap, rate, deduction, max_leverage};
           }),
           "floor"_a, "cap"_a, "rate"_a, "deduction"_a = 0.0, "max_leverage"_a = 125.0)
      .def_readwrite("floor", &hc::Bracket::floor)
      .def_readwrite("cap", &hc::Bracket::cap)
      .def_readwrite("rate", &hc::Bracket::rate)
      .def_readwrite("deduction", &hc::Bracket::deduction)
      .def_readwrite("max_leverage", &hc::Bracket::max_leverage);

  py::class_<hc::Mechanics>(m, "Mechanics")
      .def(py::init([](std::vector<hc::Bracket> brackets, double fee_in_mm, double max_leverage,
                       double representative_notional, bool inverse, int formula) {
             hc::Mechanics mech;
             mech.brackets = std::move(brackets);
             mech.fee_in_mm = fee_in_mm;
             mech.max_leverage = max_leverage;
             mech.representative_notional = representative_notional;
             mech.inverse = inverse;
             if (formula != 0 && formula != 1) throw py::value_error("formula must be 0 (generic) or 1 (mm_at_entry)");
             mech.formula = static_cast<hc::Formula>(formula);
             mech.validate();
             return mech;
           }),
           "brackets"_a, "fee_in_mm"_a = 0.0, "max_leverage"_a = 125.0,
           "representative_notional"_a = 10000.0, "inverse"_a = false, "formula"_a = 0)
      .def_readonly("brackets", &hc::Mechanics::brackets)
      .def_readonly("fee_in_mm", &hc::Mechanics::fee_in_mm)
      .def_readonly("max_leverage", &hc::Mechanics::max_leverage)
      .def_readonly("representative_notional", &hc::Mechanics::representative_notional)
      .def_readonly("inverse", &hc::Mechanics::inverse)
      .def_property_readonly("formula", [](const hc::Mechanics& me) { return static_cast<int>(me.formula); })
      .def("liquidation_ratio",
           [](const hc::Mechanics& me, int side, double leverage, double rate_scale) {
             if (side != 1 && side != -1) throw py::value_error("side must be +1 (long) or -1 (short)");
             if (!(leverage >= 1.0)) throw py::value_error("leverage must be >= 1");
             return me.liquidation_ratio(side == 1 ? hc::Side::long_ : hc::Side::short_, leverage, rate_scale);
           },
           "side"_a, "leverage"_a, "rate_scale"_a = 1.0);
}
