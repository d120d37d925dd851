#include "prelude.hpp"

#include "heatcore/engine.hpp"
#include "heatcore/serialize.hpp"

namespace hc = heatcore;

namespace {

py::bytes to_bytes(const std::vector<std::uint8_t>& b) {
  return py::bytes(reinterpret_cast<const char*>(b.data()), static_cast<py::ssize_t>(b.size()));
}

}  // namespace

// Snapshot state as bytes in and out. The file format around these bytes (magic,
// versions, library version, checksum, atomic write) is heatcore.persist's.
void register_persist(py::module_& m) {
  py::register_exception<hc::serial::SnapshotError>(m, "SnapshotError", PyExc_ValueError);
  m.attr("STATE_SECTION_HEADER") = hc::serial::kSectionHeaderSize;

  m.def(
      "crc32",
      [](const py::bytes& data, std::uint32_t crc) {
        const std::string_view v(data);
        return hc::serial::crc32(v.data(), v.size(), crc);
      },
      "data"_a, "crc"_a = 0, "CRC-32 (IEEE, as zlib.crc32) of `data`, chained from `crc`.");

  auto cls = py::reinterpret_borrow<py::class_<hc::Engine>>(m.attr("Engine"));
  cls.def(
         "state_bytes",
         [](const hc::Engine& e) {
           hc::serial::Writer w;
           {
             // Only the engine's own state is read; the Python layer holds the
             // engine's lock, so no other thread can mutate it meanwhile.
             py::gil_scoped_release release;
             e.save_state(w);
           }
           return to_bytes(w.buffer());
         },
         "The engine's exact state as tagged sections (no file header, no checksum).")
      .def_static(
          "from_state",
          [](const py::bytes& data, bool config_only) {
            const std::string_view v(data);
            hc::serial::Reader r(reinterpret_cast<const std::uint8_t*>(v.data()), v.size(), "core state");
            return hc::Engine::load_state(r, config_only);
          },
          "data"_a, "config_only"_a = false,
          "Rebuild an engine from state_bytes() (config_only: its configuration, fresh state); "
          "raises SnapshotError.");
}
