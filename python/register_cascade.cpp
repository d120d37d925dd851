// Bindings of the cascade forecast, the Cascade Learner's parameters and the
// chain history (cpp/heatcore/cascade.hpp). Adds methods to _core.Engine, so it
// must run after register_engine.
#include "prelude.hpp"

#include <array>
#include <limits>

#include "heatcore/engine.hpp"

namespace hc = heatcore;

namespace {

hc::Side side_of(int side) {
  if (side == 1) return hc::Side::long_;
  if (side == -1) return hc::Side::short_;
  throw py::value_error("side must be +1 (long) or -1 (short)");
}

hc::CascadeConfig config_from(const py::dict& d, hc::CascadeConfig c) {
  for (auto item : d) {
    const auto key = item.first.cast<std::string>();
    const auto& v = item.second;
    if (key == "gap_ms") c.gap_ms = v.cast<std::int64_t>();
    else if (key == "horizon_s") c.horizon_s = v.cast<double>();
    else if (key == "record_every_s") c.record_every_s = v.cast<double>();
    else if (key == "half_life") c.half_life = v.cast<double>();
    else if (key == "calibration_half_life") c.calibration_half_life = v.cast<double>();
    else if (key == "vol_half_life_s") c.vol_half_life_s = v.cast<double>();
    else if (key == "smooth_frac") c.smooth_frac = v.cast<double>();
    else if (key == "min_share") c.min_share = v.cast<double>();
    else if (key == "max_distance") c.max_distance = v.cast<double>();
    else if (key == "prior_exponent") c.prior_exponent = v.cast<double>();
    else if (key == "prior_scale") c.prior_scale = v.cast<double>();
    else if (key == "prior_residual") c.prior_residual = v.cast<double>();
    else if (key == "prior_fraction") c.prior_fraction = v.cast<double>();
    else if (key == "prior_level_time_s") c.prior_level_time_s = v.cast<double>();
    else if (key == "prior_weight") c.prior_weight = v.cast<double>();
    else if (key == "prior_vol_annual") c.prior_vol_annual = v.cast<double>();
    else if (key == "history") c.history = v.cast<std::size_t>();
    else throw py::key_error("unknown cascade option: " + key);
  }
  return c;
}

py::dict config_dict(const hc::CascadeConfig& c) {
  return py::dict("gap_ms"_a = c.gap_ms, "horizon_s"_a = c.horizon_s, "record_every_s"_a = c.record_every_s,
                  "half_life"_a = c.half_life, "calibration_half_life"_a = c.calibration_half_life, "vol_half_life_s"_a = c.vol_half_life_s,
                  "smooth_frac"_a = c.smooth_frac, "min_share"_a = c.min_share, "max_distance"_a = c.max_distance,
                  "prior_exponent"_a = c.prior_exponent, "prior_scale"_a = c.prior_scale,
                  "prior_residual"_a = c.prior_residual, "prior_fraction"_a = c.prior_fraction,
                  "prior_level_time_s"_a = c.prior_level_time_s, "prior_weight"_a = c.prior_weight,
                  "prior_vol_annual"_a = c.prior_vol_annual, "history"_a = c.history);
}

template <class T, class F>
py::array_t<T> column(std::size_t n, F get) {
  py::array_t<T> a(static_cast<py::ssize_t>(n));
  T* p = a.mutable_data();
  for (std::size_t i = 0; i < n; ++i) p[i] = get(i);
  return a;
}

template <class T, class F>
py::array_t<T> matrix(std::size_t n, F get) {
  py::array_t<T> a({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(hc::kMaxCascadeLevels)});
  T* p = a.mutable_data();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < static_cast<std::size_t>(hc::kMaxCascadeLevels); ++k)
      p[i * hc::kMaxCascadeLevels + k] = get(i, k);
  return a;
}

}  // namespace

void register_cascade(py::module_& m) {
  m.attr("CASCADE_MAX_LEVELS") = hc::kMaxCascadeLevels;
  auto engine = py::reinterpret_borrow<py::class_<hc::Engine>>(m.attr("Engine"));
  engine
      .def("cascade",
           [](const hc::Engine& e, int side, int levels) {
             // (n, 6): price, notional, probability, confidence, eta_s, raw_probability
             std::array<hc::CascadeLevel, hc::kMaxCascadeLevels> out;
             const int n = e.cascade(side_of(side), levels, out.data());
             py::array_t<double> a({static_cast<py::ssize_t>(n), py::ssize_t{6}});
             double* p = a.mutable_data();
             for (int i = 0; i < n; ++i) {
               const auto& l = out[static_cast<std::size_t>(i)];
               const double row[6] = {l.price, l.notional, l.probability, l.confidence, l.eta_s, l.raw_probability};
               std::copy(row, row + 6, p + 6 * i);
             }
             return a;
           },
           "side"_a, "levels"_a = hc::kMaxCascadeLevels)
      .def("cascade_clusters",
           [](const hc::Engine& e, int side, double origin, int levels) {
             std::array<hc::Cluster, hc::kMaxCascadeLevels> out;
             const int n = e.cascade_clusters(side_of(side), origin, out.data(),
                                              std::clamp(levels, 0, hc::kMaxCascadeLevels));
             py::array_t<double> a({static_cast<py::ssize_t>(n), py::ssize_t{3}});
             double* p = a.mutable_data();
             for (int i = 0; i < n; ++i) {
               const auto& c = out[static_cast<std::size_t>(i)];
               p[3 * i] = c.price;
               p[3 * i + 1] = c.notional;
               p[3 * i + 2] = c.end;
             }
             return a;
           },
           "side"_a, "origin"_a, "levels"_a = hc::kMaxCascadeLevels)
      .def("configure_cascade",
           [](hc::Engine& e, const py::dict& options) {
             e.configure_cascade(config_from(options, e.config().cascade));
           })
      .def("cascade_config", [](const hc::Engine& e) { return config_dict(e.config().cascade); })
      .def("cascade_state",
           [](const hc::Engine& e) {
             const auto& cm = e.cascade_model();
             const std::size_t n = hc::kMaxCascadeLevels + 1;  // row 0 pools every level
             auto imp = [&](std::size_t k) { return cm.impact(static_cast<int>(k)); };
             auto st = [&](std::size_t k) -> const hc::LevelStats& { return cm.stats(static_cast<int>(k)); };
             auto rec = [&](std::size_t k) -> const hc::LevelRecord& { return cm.record(static_cast<int>(k)); };
             // Row 0 of the recalibration columns is unused (NaN): it is per level only.
             const double nan = std::numeric_limits<double>::quiet_NaN();
             auto per_level = [&](auto f) {
               return column<double>(n, [&](std::size_t k) { return k == 0 ? nan : f(k); });
             };
             auto why = [&](std::size_t k) {
               hc::LevelCalibration c;
               cm.recalibrate(static_cast<int>(k), 0.5, &c);
               return c;
             };
             const hc::ChainImpact ci = cm.chain_impact();
             return py::dict(
                 "chain_exponent"_a = ci.exponent, "chain_scale"_a = ci.scale, "chain_residual"_a = ci.residual,
                 "n_chain_impact"_a = ci.n, "chain_fitted"_a = ci.fitted,
                 "base_rate"_a = per_level([&](std::size_t k) { return why(k).base; }),
                 "gate_platt"_a = per_level([&](std::size_t k) { return why(k).gate_platt; }),
                 "gate_base"_a = per_level([&](std::size_t k) { return why(k).gate_base; }),
                 "brier_raw"_a = per_level([&](std::size_t k) { return rec(k).e_raw; }),
                 "brier_platt"_a = per_level([&](std::size_t k) { return rec(k).e_platt; }),
                 "brier_base"_a = per_level([&](std::size_t k) { return rec(k).e_base; }),
                 "brier_issued"_a = per_level([&](std::size_t k) { return rec(k).e_issued; }),
                 "consensus_price"_a = cm.consensus_price(),
                 "exponent"_a = column<double>(n, [&](std::size_t k) { return imp(k).exponent; }),
                 "scale"_a = column<double>(n, [&](std::size_t k) { return imp(k).scale; }),
                 "residual"_a = column<double>(n, [&](std::size_t k) { return imp(k).residual; }),
                 "fraction"_a = column<double>(n, [&](std::size_t k) { return cm.fraction(static_cast<int>(k)); }),
                 "level_time_s"_a = column<double>(n, [&](std::size_t k) { return cm.level_time_s(static_cast<int>(k)); }),
                 "platt_a"_a = column<double>(n, [&](std::size_t k) { return st(k).platt_a; }),
                 "platt_b"_a = column<double>(n, [&](std::size_t k) { return st(k).platt_b; }),
                 "n_impact"_a = column<double>(n, [&](std::size_t k) { return st(k).n_impact; }),
                 "n_fraction"_a = column<double>(n, [&](std::size_t k) { return st(k).n_fraction; }),
                 "n_time"_a = column<double>(n, [&](std::size_t k) { return st(k).n_time; }),
                 "n_resolved"_a = column<double>(n, [&](std::size_t k) { return st(k).n_resolved; }),
                 "vol_per_sqrt_s"_a = cm.vol_per_sqrt_s(), "chains_total"_a = cm.chains_total(),
                 "history_size"_a = cm.history_size(), "history_capacity"_a = cm.history_capacity(),
                 "pending_forecasts"_a = cm.pending_forecasts(), "resolved_forecasts"_a = cm.resolved_forecasts(),
                 "dropped_forecasts"_a = cm.dropped_forecasts(), "memory_bytes"_a = cm.memory_bytes(),
                 "open_long"_a = cm.chain_open(hc::Side::long_), "open_short"_a = cm.chain_open(hc::Side::short_));
           })
      .def("chains",
           [](const hc::Engine& e, bool include_open) {
             const auto& cm = e.cascade_model();
             std::array<const hc::ChainRecord*, 2> open{};
             std::size_t n_open = 0;
             if (include_open)
               for (hc::Side s : {hc::Side::long_, hc::Side::short_})
                 if (cm.chain_open(s)) open[n_open++] = &cm.open_chain(s);
             const std::size_t nh = cm.history_size();
             const std::size_t n = nh + n_open;
             auto rec = [&](std::size_t i) -> const hc::ChainRecord& { return i < nh ? cm.history(i) : *open[i - nh]; };
             return py::dict(
                 "start_ts"_a = column<std::int64_t>(n, [&](std::size_t i) { return rec(i).start_ts; }),
                 "end_ts"_a = column<std::int64_t>(n, [&](std::size_t i) { return rec(i).end_ts; }),
                 "side"_a = column<std::int8_t>(n, [&](std::size_t i) { return static_cast<std::int8_t>(rec(i).side); }),
                 "start_price"_a = column<double>(n, [&](std::size_t i) { return rec(i).start_price; }),
                 "extreme_price"_a = column<double>(n, [&](std::size_t i) { return rec(i).extreme_price; }),
                 "notional"_a = column<double>(n, [&](std::size_t i) { return rec(i).notional; }),
                 "events"_a = column<std::uint64_t>(n, [&](std::size_t i) { return rec(i).events; }),
                 "n_levels"_a = column<std::int32_t>(n, [&](std::size_t i) { return rec(i).n_levels; }),
                 "reached"_a = column<std::int32_t>(n, [&](std::size_t i) { return rec(i).reached; }),
                 "open"_a = column<bool>(n, [&](std::size_t i) { return i >= nh; }),
                 "level_price"_a = matrix<double>(n, [&](std::size_t i, std::size_t k) { return rec(i).level_price[k]; }),
                 "level_exposure"_a = matrix<double>(n, [&](std::size_t i, std::size_t k) { return rec(i).level_exposure[k]; }),
                 "level_notional"_a = matrix<double>(n, [&](std::size_t i, std::size_t k) { return rec(i).level_notional[k]; }),
                 "level_ts"_a = matrix<std::int64_t>(n, [&](std::size_t i, std::size_t k) { return rec(i).level_ts[k]; }));
           },
           "include_open"_a = true);
}
