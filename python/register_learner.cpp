// Bindings of the Leverage Learner: its configuration and read-only views of
// each venue/side learner inside an Engine.
#include "prelude.hpp"

#include "heatcore/engine.hpp"
#include "heatcore/leverage_learner.hpp"

namespace hc = heatcore;

namespace {

const hc::LeverageLearner& learner_of(const hc::Engine& e, int slot, int side) {
  if (slot < 0 || static_cast<std::size_t>(slot) >= e.venue_count()) throw py::index_error("venue slot out of range");
  if (side != 1 && side != -1) throw py::value_error("side must be +1 (long) or -1 (short)");
  return e.learner(static_cast<std::size_t>(slot), side == 1 ? hc::Side::long_ : hc::Side::short_);
}

py::array_t<double> copy_out(const std::vector<double>& v) {
  py::array_t<double> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

}  // namespace

void register_learner(py::module_& m) {
  py::class_<hc::LearnerConfig>(m, "LearnerConfig")
      .def(py::init<>())
      .def_readwrite("half_life_hours", &hc::LearnerConfig::half_life_hours)
      .def_readwrite("lifetime_hours", &hc::LearnerConfig::lifetime_hours)
      .def_readwrite("lifetime_exponent", &hc::LearnerConfig::lifetime_exponent)
      .def_readwrite("buffer_events", &hc::LearnerConfig::buffer_events)
      .def_readwrite("refresh_events", &hc::LearnerConfig::refresh_events)
      .def_readwrite("refresh_hours", &hc::LearnerConfig::refresh_hours)
      .def_readwrite("em_iterations", &hc::LearnerConfig::em_iterations)
      .def_readwrite("kernel_bins", &hc::LearnerConfig::kernel_bins)
      .def_readwrite("kernel_frac", &hc::LearnerConfig::kernel_frac)
      .def_readwrite("crossing_window_s", &hc::LearnerConfig::crossing_window_s)
      .def_readwrite("crossing_records", &hc::LearnerConfig::crossing_records)
      .def_readwrite("tier_smoothing", &hc::LearnerConfig::tier_smoothing)
      .def_readwrite("size_cap", &hc::LearnerConfig::size_cap)
      .def_readwrite("sample_window_ms", &hc::LearnerConfig::sample_window_ms)
      .def_readwrite("prior_min", &hc::LearnerConfig::prior_min)
      .def_readwrite("prior_max", &hc::LearnerConfig::prior_max)
      .def_readwrite("loglik_floor", &hc::LearnerConfig::loglik_floor)
      .def("validate", [](const hc::LearnerConfig& c) {
        try {
          c.validate();
        } catch (const std::invalid_argument& err) {
          throw py::value_error(err.what());
        }
      });

  m.def("solve_rates",
        [](const std::vector<double>& a, const std::vector<double>& c, const std::vector<double>& b,
           const std::vector<double>& n, double total) {
          if (c.size() != a.size() || b.size() != a.size() || n.size() != a.size())
            throw py::value_error("a, c, b, n must have one entry per tier");
          std::vector<double> out(a.size());
          hc::solve_rates(a.size(), a.data(), c.data(), b.data(), n.data(), total, out.data());
          return copy_out(out);
        },
        "a"_a, "c"_a, "b"_a, "n"_a, "total"_a);

  m.def("learner_mix",
        [](const hc::Engine& e, int slot, int side, const std::string& which) {
          const auto& l = learner_of(e, slot, side);
          if (which == "openings") return copy_out(l.openings_mix());
          if (which == "open_interest") return copy_out(l.open_interest_mix());
          if (which == "prior") return copy_out(l.prior());
          throw py::value_error("which must be 'openings', 'open_interest' or 'prior'");
        },
        "engine"_a, "slot"_a, "side"_a, "which"_a);

  m.def("learner_last_exposure", [](const hc::Engine& e, int slot, int side) {
    return copy_out(learner_of(e, slot, side).last_event_exposure());
  });

  m.def("learner_diagnostics", [](const hc::Engine& e, int slot, int side) {
    const auto& l = learner_of(e, slot, side);
    const auto d = l.diagnostics();
    py::array_t<bool> tested(static_cast<py::ssize_t>(l.tiers()));
    for (std::size_t t = 0; t < l.tiers(); ++t) tested.mutable_data()[t] = l.tested(t);
    return py::dict("n_events"_a = d.n_events, "unexplained"_a = d.unexplained, "preexisting"_a = d.preexisting,
                    "sampled"_a = d.sampled, "clipped"_a = d.clipped, "refreshes"_a = d.refreshes,
                    "effective_events"_a = d.effective_events, "prior_strength"_a = d.prior_strength,
                    "mean_event_usd"_a = d.mean_event_usd, "opening_rate_usd_h"_a = d.opening_rate_usd_h,
                    "loglik_sum"_a = d.loglik_sum, "loglik_n"_a = d.loglik_n,
                    "crossed_events"_a = copy_out(l.crossed_events()),
                    "attributed_events"_a = copy_out(l.attributed_events()), "tested"_a = tested);
  });
}
