// Bindings of the Exchange Calibrator: settings, and the raw per-venue state that
// heatcore.Engine.calibration() turns into its documented dictionary.
#include "prelude.hpp"

#include "heatcore/engine.hpp"

namespace hc = heatcore;

namespace {

std::size_t slot_checked(const hc::Engine& e, int slot) {
  if (slot < 0 || static_cast<std::size_t>(slot) >= e.venue_count()) throw py::index_error("venue slot out of range");
  return static_cast<std::size_t>(slot);
}

hc::Side side_of(int side) {
  if (side == 1) return hc::Side::long_;
  if (side == -1) return hc::Side::short_;
  throw py::value_error("side must be +1 (long) or -1 (short)");
}

hc::PriceKind kind_of(int kind) {
  if (kind < 0 || kind > 5) throw py::value_error("price_kind must be in 0..5 (heatcore.venues.PRICE_KINDS)");
  return static_cast<hc::PriceKind>(kind);
}

py::dict estimate_dict(const hc::Estimate& e) {
  return py::dict("value"_a = e.value, "std"_a = e.sd, "n_eff"_a = e.n_eff, "prior"_a = e.prior,
                  "prior_std"_a = e.prior_sd, "departs"_a = e.departs);
}

py::dict side_dict(const hc::Engine& eng, std::size_t slot, hc::Side side) {
  const hc::Calibrator& c = eng.calibrator();
  const hc::CalibSide& st = c.side_state(slot, side);
  py::dict by_kind;
  for (int k = 0; k < 6; ++k) {
    const auto kind = static_cast<hc::PriceKind>(k);
    const auto& loc = st.offset[static_cast<std::size_t>(k)];
    if (loc.empty() && kind != c.documented_kind(slot)) continue;
    py::dict d = estimate_dict(c.offset(slot, side, kind));
    d["events"] = loc.count();
    d["clipped"] = loc.clipped();
    d["restarts"] = loc.restarts();
    d["spread"] = loc.sigma();
    by_kind[hc::price_kind_name(kind)] = d;
  }
  py::dict rate = estimate_dict(c.rate_scale(slot, side));
  rate["source"] = hc::rate_source_name(c.rate_source(slot, side));
  rate["applied"] = c.applied_scale(slot, side);
  const double sd_ln = std::sqrt(std::max(st.lq_var, 0.0));
  const double p99 = st.lq_n > 0 ? std::exp(st.lq_mean + 2.326 * sd_ln) : 0.0;
  py::dict size("p99_usd"_a = p99, "median_usd"_a = st.lq_n > 0 ? std::exp(st.lq_mean) : 0.0,
                "max_usd"_a = st.q_max, "n_eff"_a = st.lq_n,
                "max_leverage_at_p99"_a = c.max_leverage_at(slot, p99));
  return py::dict("rate_scale"_a = rate, "offsets"_a = by_kind, "size"_a = size,
                  "maintenance_rate"_a = c.maintenance_rate(slot, side, c.rate_scale(slot, side).value),
                  "documented_rate"_a = c.maintenance_rate(slot, side, 1.0),
                  "level_sigma"_a = c.level_sigma(slot, side), "used"_a = st.used,
                  "no_reference"_a = st.no_reference);
}

}  // namespace

void register_calibrator(py::module_& m) {
  py::class_<hc::CalibratorConfig>(m, "CalibratorConfig")
      .def(py::init<>())
      .def_readwrite("fresh_ms", &hc::CalibratorConfig::fresh_ms)
      .def_readwrite("huber_c", &hc::CalibratorConfig::huber_c)
      .def_readwrite("sigma_floor", &hc::CalibratorConfig::sigma_floor)
      .def_readwrite("systematic_sd", &hc::CalibratorConfig::systematic_sd)
      .def_readwrite("max_n_eff", &hc::CalibratorConfig::max_n_eff)
      .def_readwrite("scale_min", &hc::CalibratorConfig::scale_min)
      .def_readwrite("scale_max", &hc::CalibratorConfig::scale_max)
      .def_readwrite("scale_prior_sd", &hc::CalibratorConfig::scale_prior_sd)
      .def_readwrite("ref_leverage", &hc::CalibratorConfig::ref_leverage)
      .def_readwrite("apply_rel", &hc::CalibratorConfig::apply_rel)
      .def_readwrite("apply_every", &hc::CalibratorConfig::apply_every)
      .def_readwrite("depart_z", &hc::CalibratorConfig::depart_z)
      .def_readwrite("widen_kernel", &hc::CalibratorConfig::widen_kernel);

  // Methods added to the Engine class that register_engine() defined.
  auto engine = py::reinterpret_borrow<py::class_<hc::Engine>>(m.attr("Engine"));
  engine
      .def("set_calibrating", &hc::Engine::set_calibrating)
      .def("calibrating", &hc::Engine::calibrating)
      .def("set_learning_mix", &hc::Engine::set_learning_mix)
      .def("learning_mix", &hc::Engine::learning_mix)
      .def("configure_calibrator",
           [](hc::Engine& e, const hc::CalibratorConfig& cfg) {
             e.calibrator().reset(cfg);
             // The estimates are forgotten: put every level back where the registry says.
             for (std::size_t s = 0; s < e.venue_count(); ++s)
               for (hc::Side side : {hc::Side::long_, hc::Side::short_}) e.apply_calibration(s, side);
           })
      .def("calibrator_config", [](const hc::Engine& e) { return e.calibrator().config(); })
      .def("set_has_feed",
           [](hc::Engine& e, int slot, bool on) { e.calibrator().set_has_feed(slot_checked(e, slot), on); })
      .def("has_feed", [](const hc::Engine& e, int slot) { return e.calibrator().has_feed(slot_checked(e, slot)); })
      .def("set_documented_kind",
           [](hc::Engine& e, int slot, int kind) { e.calibrator().set_documented_kind(slot_checked(e, slot), kind_of(kind)); })
      .def("apply_calibration",
           [](hc::Engine& e, int slot, int side) { e.apply_calibration(slot_checked(e, slot), side_of(side)); })
      .def("calibration",
           [](const hc::Engine& e, int slot) {
             const auto s = slot_checked(e, slot);
             return py::dict("documented_kind"_a = hc::price_kind_name(e.calibrator().documented_kind(s)),
                             "long"_a = side_dict(e, s, hc::Side::long_),
                             "short"_a = side_dict(e, s, hc::Side::short_));
           })
      .def("calibrated_window",
           [](const hc::Engine& e, int slot, int side, int kind, double reported, double min_half_bins,
              double frac) {
             double lo = 0.0, hi = 0.0;
             e.calibrated_window(slot_checked(e, slot), side_of(side), kind_of(kind), reported, min_half_bins, frac,
                                 lo, hi);
             return py::make_tuple(lo, hi);
           },
           "slot"_a, "side"_a, "kind"_a, "reported"_a, "min_half_bins"_a = 2.0, "frac"_a = 0.002)
      .def("trigger_of",
           [](const hc::Engine& e, int slot, int side, int kind, double reported) {
             return e.calibrator().trigger_of(slot_checked(e, slot), side_of(side), kind_of(kind), reported);
           })
      .def("documented_offset",
           [](const hc::Engine& e, int slot, int side, int kind, double scale) {
             if (!(scale > 0.0)) throw py::value_error("scale must be > 0");
             return e.calibrator().documented_offset(slot_checked(e, slot), side_of(side), kind_of(kind), scale);
           },
           "slot"_a, "side"_a, "kind"_a, "scale"_a = 1.0);
}
