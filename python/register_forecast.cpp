#include "prelude.hpp"

#include <algorithm>
#include <vector>

#include "heatcore/engine.hpp"

namespace hc = heatcore;

namespace {

int checked_forecast_slot(const hc::Engine& e, int slot) {
  if (slot >= static_cast<int>(e.venue_count())) throw py::index_error("venue slot out of range");
  return slot < 0 ? -1 : slot;
}

}  // namespace

void register_forecast(py::module_& m) {
  py::class_<hc::ForecastConfig>(m, "ForecastConfig")
      .def(py::init<>())
      .def_readwrite("vol_tau_s", &hc::ForecastConfig::vol_tau_s)
      .def_readwrite("vol_min_dt_s", &hc::ForecastConfig::vol_min_dt_s)
      .def_readwrite("vol_prior_annual", &hc::ForecastConfig::vol_prior_annual)
      .def_readwrite("ref_horizon_s", &hc::ForecastConfig::ref_horizon_s)
      .def_readwrite("checkpoint_every_s", &hc::ForecastConfig::checkpoint_every_s)
      .def_readwrite("calib_forget", &hc::ForecastConfig::calib_forget)
      .def_readwrite("calib_prior_n", &hc::ForecastConfig::calib_prior_n)
      .def_readwrite("burst_tau_s", &hc::ForecastConfig::burst_tau_s)
      .def_readwrite("base_tau_s", &hc::ForecastConfig::base_tau_s)
      .def_readwrite("background_prior", &hc::ForecastConfig::background_prior)
      .def_readwrite("em_every_s", &hc::ForecastConfig::em_every_s)
      .def_readwrite("em_tau_s", &hc::ForecastConfig::em_tau_s)
      .def_readwrite("em_map_horizon_s", &hc::ForecastConfig::em_map_horizon_s)
      .def_readwrite("em_prior_n", &hc::ForecastConfig::em_prior_n)
      .def_readwrite("reach_prior", &hc::ForecastConfig::reach_prior)
      .def_readwrite("cont_prior", &hc::ForecastConfig::cont_prior)
      .def_readwrite("offset_prior_n", &hc::ForecastConfig::offset_prior_n)
      .def_readwrite("offset_prior_bins", &hc::ForecastConfig::offset_prior_bins)
      .def_readwrite("offset_forget", &hc::ForecastConfig::offset_forget)
      .def_readwrite("shift_forget", &hc::ForecastConfig::shift_forget)
      .def_readwrite("shift_prior_nats", &hc::ForecastConfig::shift_prior_nats)
      .def_readwrite("liq_anchor_after_s", &hc::ForecastConfig::liq_anchor_after_s)
      .def_readwrite("learn", &hc::ForecastConfig::learn)
      .def_readwrite("generative_map", &hc::ForecastConfig::generative_map)
      .def_readwrite("closing_hazard", &hc::ForecastConfig::closing_hazard);

  m.def("engine_configure_forecast",
        [](hc::Engine& e, const hc::ForecastConfig& c) {
          try {
            e.configure_forecast(c);
          } catch (const std::invalid_argument& ex) {
            throw py::value_error(ex.what());
          }
        },
        "engine"_a, "config"_a);

  // Forecast of several slots (-1 = all venues) on one window of absolute bins:
  // returns (forecast[len(slots), 2, n], reach[n]).
  m.def("engine_forecast",
        [](const hc::Engine& e, const std::vector<int>& slots, double horizon_s, std::int64_t k_lo,
           std::int64_t n) {
          if (n < 0 || n > 50'000'000) throw py::value_error("window size out of range");
          if (!(horizon_s >= 0.0)) throw py::value_error("horizon_s must be >= 0");
          for (int s : slots) checked_forecast_slot(e, s);
          const auto ns = static_cast<py::ssize_t>(slots.size());
          py::array_t<double> out({ns, py::ssize_t{2}, static_cast<py::ssize_t>(n)});
          py::array_t<double> reach(static_cast<py::ssize_t>(n));
          double* o = out.mutable_data();
          double* r = reach.mutable_data();
          {
            // Reads only the engine's C++ state and the fresh arrays; the Python layer
            // holds the engine's lock, so nothing mutates the engine meanwhile.
            py::gil_scoped_release release;
            const bool want_all = std::find(slots.begin(), slots.end(), -1) != slots.end();
            const auto un = static_cast<std::size_t>(n);
            if (want_all && slots.size() > 1) {
              // The sum over venues from per-venue forecasts computed once each.
              const std::size_t nv = e.venue_count();
              std::vector<double> per(nv * 2 * un);
              std::vector<double> total(2 * un, 0.0);
              for (std::size_t v = 0; v < nv; ++v) {
                double* base = per.data() + v * 2 * un;
                e.forecast(static_cast<int>(v), horizon_s, k_lo, n, base, base + un, r);
                for (std::size_t i = 0; i < 2 * un; ++i) total[i] += base[i];
              }
              for (std::size_t i = 0; i < slots.size(); ++i) {
                const double* src = slots[i] < 0 ? total.data() : per.data() + static_cast<std::size_t>(slots[i]) * 2 * un;
                std::copy(src, src + 2 * un, o + i * 2 * un);
              }
            } else {
              for (std::size_t i = 0; i < slots.size(); ++i) {
                double* base = o + i * 2 * un;
                e.forecast(slots[i], horizon_s, k_lo, n, base, base + un, r);
              }
            }
          }
          return py::make_tuple(out, reach);
        },
        "engine"_a, "slots"_a, "horizon_s"_a, "k_lo"_a, "n"_a);

  m.def("engine_forecast_state",
        [](const hc::Engine& e, int slot) {
          const auto& f = e.forecaster();
          if (slot < 0) {
            py::array_t<double> surv(101);
            for (int i = 0; i <= 100; ++i) surv.mutable_data()[i] = f.survival(0.1 * i);
            return py::dict("anchor_price"_a = f.anchor_price(), "variance_rate"_a = f.variance_rate(),
                            "sigma_1h"_a = f.sigma(3600.0), "calibration_n"_a = f.calibration_observations(),
                            "survival_z"_a = surv, "now_s"_a = f.now_s());
          }
          checked_forecast_slot(e, slot);
          const auto& v = f.venue(static_cast<std::size_t>(slot));
          return py::dict("reach_scale_long"_a = v.a[0], "reach_scale_short"_a = v.a[1],
                          "continuation_long"_a = v.b[0], "continuation_short"_a = v.b[1],
                          "background_long"_a = v.c[0], "background_short"_a = v.c[1],
                          "map_shift_bins_long"_a = v.shift[0], "map_shift_bins_short"_a = v.shift[1],
                          "burst_usd_long"_a = v.burst[0], "burst_usd_short"_a = v.burst[1],
                          "anchor_long"_a = v.anchor[0], "anchor_short"_a = v.anchor[1],
                          "continuation_kernel_long"_a = py::array_t<double>(static_cast<py::ssize_t>(v.kernel[0].size()), v.kernel[0].data()),
                          "continuation_kernel_short"_a = py::array_t<double>(static_cast<py::ssize_t>(v.kernel[1].size()), v.kernel[1].data()),
                          "events_long"_a = v.events[0], "events_short"_a = v.events[1],
                          "unexplained_long"_a = v.unexplained[0], "unexplained_short"_a = v.unexplained[1]);
        },
        "engine"_a, "slot"_a = -1);
}
