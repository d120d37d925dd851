#include "prelude.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "heatcore's compiled core. Private: use the `heatcore` package.";
  register_mechanics(m);
  register_learner(m);  // before register_engine: Engine's init defaults to a LearnerConfig
  register_engine(m);
  register_calibrator(m);
  register_persist(m);  // after register_engine: adds methods to Engine
  register_forecast(m);
  register_cascade(m);  // adds methods to Engine: after register_engine
}
