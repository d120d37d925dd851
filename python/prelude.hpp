// Included first by every binding file so that all translation units see the
// same pybind11 configuration and casters (one definition rule).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;
using namespace pybind11::literals;

void register_mechanics(py::module_& m);
void register_learner(py::module_& m);
void register_engine(py::module_& m);
void register_calibrator(py::module_& m);  // after register_engine: adds Engine methods
void register_persist(py::module_& m);
void register_forecast(py::module_& m);
void register_cascade(py::module_& m);
