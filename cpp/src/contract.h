// The servebench-v1 request contract, shared by every HTTP adapter (see plugins/servebench/servers/contract.py):
//
//   POST /predict  {"instances": [[f1, ..., fn], ...]}
//               -> {"predictions": [label, ...], "probabilities": [[p1, ..., pk], ...]}
//   GET  /health   -> {"status": "ok", "model": "<name>", "inference": "inline"}
//
// Validation and error texts are those of servers/_common/servebench_model.py, check for check, in the
// same order, so every server rejects the same inputs with the same status. Adapters only move bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "model.h"

namespace servebench {

struct Limits {
    std::uint64_t max_body_bytes = 1 << 20;
    std::size_t max_batch_rows = 1024;
};

enum class Route { Predict, Health, NotFound, MethodNotAllowed };

// Which handler a request goes to; `target` may carry a query string (ignored).
Route route(std::string_view method, std::string_view target);

class Service {
public:
    Service(DenseModel model, std::string name, Limits limits)
        : model_(std::move(model)), name_(std::move(name)), limits_(limits) {}

    const DenseModel& model() const { return model_; }
    const std::string& name() const { return name_; }
    const Limits& limits() const { return limits_; }

    // Each writes the JSON answer into `out` (replacing its content, keeping its capacity) and returns
    // the HTTP status. Thread-safe: scratch memory is per thread.
    int predict(std::string_view body, std::string& out) const;
    // A body over the limit, known from its Content-Length (`bytes`) or, for a chunked body, only as
    // "more than the limit" (`bytes` = 0).
    int body_too_large(std::uint64_t bytes, std::string& out) const;
    int health(std::string& out) const;
    static int not_found(std::string& out);
    static int method_not_allowed(std::string& out);
    static int internal_error(std::string& out);

private:
    DenseModel model_;
    std::string name_;
    Limits limits_;
};

}  // namespace servebench
