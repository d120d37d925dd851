#include "prelude.hpp"

#include "heatcore/engine.hpp"

namespace hc = heatcore;

namespace {

hc::Side to_side(int side) {
  if (side == 1) return hc::Side::long_;
  if (side == -1) return hc::Side::short_;
  throw py::value_error("side must be +1 (long) or -1 (short)");
}

std::size_t checked_slot(const hc::Engine& e, int slot) {
  if (slot < 0 || static_cast<std::size_t>(slot) >= e.venue_count()) throw py::index_error("venue slot out of range");
  return static_cast<std::size_t>(slot);
}

py::array_t<double> to_array(const std::vector<double>& v) {
  py::array_t<double> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

py::dict counts_dict(const hc::IngestCounts& c) {
  py::dict rejected;
  for (int r = 0; r < hc::kRejectReasons; ++r)
    if (c.rejected[static_cast<std::size_t>(r)] > 0)
      rejected[hc::reject_name(static_cast<hc::Reject>(r))] = c.rejected[static_cast<std::size_t>(r)];
  return py::dict("price"_a = c.price, "oi"_a = c.open_interest, "liquidation"_a = c.liquidation,
                  "rejected"_a = c.rejected_total(), "reasons"_a = rejected);
}

// (grid k0, grid n, long, short, price) for Engine.heatmap() and Engine.open_book():
// both sides copied (the books' buffers move when the grid grows) and the price
// the map stands at. `fill` is Engine::heatmap or Engine::open_book.
template <class Fill>
py::tuple map_tuple(const hc::Engine& e, int slot, Fill fill) {
  if (slot >= 0) checked_slot(e, slot);
  const auto& g = e.grid();
  const auto n = static_cast<py::ssize_t>(g.n);
  py::array_t<double> lo(n), sh(n);
  if (n > 0) (e.*fill)(slot, lo.mutable_data(), sh.mutable_data());
  const double price = slot >= 0 ? e.venue(static_cast<std::size_t>(slot)).stats.last_price : e.reference_price();
  return py::make_tuple(g.k0, g.n, lo, sh, price);
}

}  // namespace

void register_engine(py::module_& m) {
  m.def("reject_name", [](int code) { return std::string(hc::reject_name(static_cast<hc::Reject>(code))); });
  m.attr("EVENT_ITEMSIZE") = sizeof(hc::Event);

  py::class_<hc::VenueConfig>(m, "VenueConfig")
      .def(py::init([](std::string name, int registry_id, hc::Mechanics mech, std::vector<double> prior_long,
                       std::vector<double> prior_short, double cross_share, double cross_distance) {
             if (registry_id < 0 || registry_id > 65535) throw py::value_error("registry_id out of range");
             return hc::VenueConfig{std::move(name), static_cast<std::uint16_t>(registry_id), std::move(mech),
                                    std::move(prior_long), std::move(prior_short), cross_share, cross_distance};
           }),
           "name"_a, "registry_id"_a, "mechanics"_a, "prior_long"_a, "prior_short"_a, "cross_share"_a = 0.0,
           "cross_distance"_a = 1.0)
      .def_readonly("name", &hc::VenueConfig::name)
      .def_readonly("registry_id", &hc::VenueConfig::registry_id)
      .def_readonly("mechanics", &hc::VenueConfig::mechanics);

  py::class_<hc::Engine>(m, "Engine")
      .def(py::init([](double step, std::vector<double> tiers, std::vector<hc::VenueConfig> venues, bool learn,
                       double seed_spread, std::int64_t ts_tolerance_ms, double max_price_ratio,
                       std::int64_t max_bins, const hc::LearnerConfig& learner) {
             hc::EngineConfig c;
             c.step = step;
             c.tiers = std::move(tiers);
             c.venues = std::move(venues);
             c.learn = learn;
             c.seed_spread = seed_spread;
             c.ts_tolerance_ms = ts_tolerance_ms;
             c.max_price_ratio = max_price_ratio;
             c.max_bins = max_bins;
             c.learner = learner;
             return hc::Engine(std::move(c));
           }),
           "step"_a, "tiers"_a, "venues"_a, "learn"_a = true, "seed_spread"_a = 0.05,
           "ts_tolerance_ms"_a = 5000, "max_price_ratio"_a = 10.0, "max_bins"_a = 4'000'000,
           "learner"_a = hc::LearnerConfig{})
      .def("update_price",
           [](hc::Engine& e, int slot, std::int64_t ts, double price) {
             return static_cast<int>(e.update_price(checked_slot(e, slot), ts, price));
           })
      .def("update_open_interest",
           [](hc::Engine& e, int slot, std::int64_t ts, double oi_usd, double price) {
             return static_cast<int>(e.update_open_interest(checked_slot(e, slot), ts, oi_usd, price));
           })
      .def("on_liquidation",
           [](hc::Engine& e, int slot, std::int64_t ts, int side, double price, double notional, int price_kind,
              int flags) {
             hc::Side s = side == 1 ? hc::Side::long_ : side == -1 ? hc::Side::short_ : hc::Side::none;
             return static_cast<int>(e.on_liquidation(checked_slot(e, slot), ts, s, price, notional,
                                                      static_cast<hc::PriceKind>(price_kind & 0xff),
                                                      static_cast<std::uint8_t>(flags & 0xff)));
           },
           "slot"_a, "ts"_a, "side"_a, "price"_a, "notional"_a, "price_kind"_a = 0, "flags"_a = 0)
      .def("ingest",
           [](hc::Engine& e, const py::array& events) {
             if (events.ndim() != 1) throw py::value_error("events must be a 1-d structured array");
             if (events.itemsize() != static_cast<py::ssize_t>(sizeof(hc::Event)))
               throw py::type_error("events must have dtype heatcore.EVENT_DTYPE");
             if (!(events.flags() & py::array::c_style)) throw py::value_error("events must be C-contiguous");
             const auto* data = static_cast<const hc::Event*>(events.data());
             const auto n = static_cast<std::size_t>(events.shape(0));
             hc::IngestCounts c;
             {
               // The batch only touches the engine's own C++ state and the array's
               // buffer (kept alive by `events`); the Python layer holds the engine's
               // lock, so no other thread can reach either while the GIL is released.
               py::gil_scoped_release release;
               c = e.ingest(data, n);
             }
             return counts_dict(c);
           })
      .def("heatmap",
           [](const hc::Engine& e, int slot) {
             if (slot >= 0) checked_slot(e, slot);
             const auto& g = e.grid();
             const auto n = static_cast<py::ssize_t>(g.n);
             py::array_t<double> prices(n), lo(n), sh(n);
             double* p = prices.mutable_data();
             for (py::ssize_t i = 0; i < n; ++i) p[i] = static_cast<double>(g.k0 + i) * g.step;
             if (n > 0) e.heatmap(slot, lo.mutable_data(), sh.mutable_data());
             return py::make_tuple(prices, lo, sh);
           },
           "slot"_a = -1)
      .def("map_arrays", [](const hc::Engine& e, int slot) { return map_tuple(e, slot, &hc::Engine::heatmap); },
           "slot"_a = -1)
      .def("open_book_arrays",
           [](const hc::Engine& e, int slot) { return map_tuple(e, slot, &hc::Engine::open_book); }, "slot"_a = -1)
      .def("set_mix",
           [](hc::Engine& e, int slot, int side, const std::vector<double>& w) {
             e.set_mix(checked_slot(e, slot), to_side(side), w);
           })
      .def("mix", [](const hc::Engine& e, int slot, int side) {
             return to_array(e.venue(checked_slot(e, slot)).book[hc::side_index(to_side(side))].weights());
           })
      .def("ratios", [](const hc::Engine& e, int slot, int side) {
             return to_array(e.venue(checked_slot(e, slot)).book[hc::side_index(to_side(side))].ratios());
           })
      .def("tier_totals", [](const hc::Engine& e, int slot, int side) {
             return to_array(e.venue(checked_slot(e, slot)).book[hc::side_index(to_side(side))].tier_totals());
           })
      .def("tier_consumed", [](const hc::Engine& e, int slot, int side) {
             return to_array(e.venue(checked_slot(e, slot)).book[hc::side_index(to_side(side))].tier_consumed());
           })
      .def("set_learning", [](hc::Engine& e, int slot, bool on) { e.set_learning(checked_slot(e, slot), on); })
      .def("learning", [](const hc::Engine& e, int slot) { return e.learning(checked_slot(e, slot)); })
      .def("venue_stats",
           [](const hc::Engine& e, int slot) {
             const auto& v = e.venue(checked_slot(e, slot));
             const auto& s = v.stats;
             return py::dict(
                 "prices"_a = s.prices, "oi_updates"_a = s.oi_updates, "liquidations"_a = s.liquidations,
                 "observed_usd_long"_a = s.observed_usd[0], "observed_usd_short"_a = s.observed_usd[1],
                 "observed_n_long"_a = s.observed_n[0], "observed_n_short"_a = s.observed_n[1],
                 "unexplained_long"_a = s.unexplained[0], "unexplained_short"_a = s.unexplained[1],
                 "expected_usd_long"_a = v.book[0].expected_usd(), "expected_usd_short"_a = v.book[1].expected_usd(),
                 "exposure_base_long"_a = v.book[0].exposure_total(),
                 "exposure_base_short"_a = v.book[1].exposure_total(), "oi_base"_a = s.oi_base,
                 "last_price"_a = s.last_price, "last_ts"_a = s.last_ts, "own_price"_a = s.own_price);
           })
      .def("rejected",
           [](const hc::Engine& e) {
             py::dict d;
             for (int r = 0; r < hc::kRejectReasons; ++r)
               d[hc::reject_name(static_cast<hc::Reject>(r))] = e.rejected()[static_cast<std::size_t>(r)];
             return d;
           })
      .def_property_readonly("grid", [](const hc::Engine& e) {
             return py::make_tuple(e.grid().step, e.grid().k0, e.grid().n);
           })
      .def_property_readonly("venue_count", &hc::Engine::venue_count)
      .def_property_readonly("tiers", [](const hc::Engine& e) { return to_array(e.config().tiers); })
      .def_property_readonly("last_ts", &hc::Engine::last_ts)
      .def_property_readonly("reference_price", &hc::Engine::reference_price);
}
