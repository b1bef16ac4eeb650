#include "cli.h"

#include <rapidjson/document.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace servebench {
namespace {

[[noreturn]] void usage(const char* program, const std::string& problem) {
    std::FILE* to = problem.empty() ? stdout : stderr;
    if (!problem.empty()) std::fprintf(to, "%s: %s\n", program, problem.c_str());
    std::fprintf(to,
                 "usage: %s --weights model.weights.json --meta metadata.json [--host 127.0.0.1] [--port 8000]\n"
                 "       [--threads 1] [--max-body-bytes 1048576]\n",
                 program);
    std::exit(problem.empty() ? 0 : 2);
}

template <typename T>
T number(const char* program, const std::string& flag, const std::string& text, T low, T high) {
    T value{};
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < low || value > high)
        usage(program, flag + " must be an integer from " + std::to_string(low) + " to " + std::to_string(high) +
                           ", not '" + text + "'");
    return value;
}

rapidjson::Document read_json(const std::string& path) {
    std::ifstream file(path);
    if (!file) throw std::runtime_error(path + ": cannot open");
    std::stringstream text;
    text << file.rdbuf();
    rapidjson::Document doc;
    if (doc.Parse(text.str().c_str()).HasParseError() || !doc.IsObject())
        throw std::runtime_error(path + ": is not a JSON object");
    return doc;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Options parse_options(int argc, char** argv, const char* program) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "-h" || flag == "--help") usage(program, "");
        if (i + 1 >= argc) usage(program, flag.rfind("--", 0) == 0 ? flag + " needs a value" : "unexpected '" + flag + "'");
        const std::string value = argv[++i];
        if (flag == "--host") o.host = value;
        else if (flag == "--port") o.port = number<std::uint16_t>(program, flag, value, 0, 65535);
        else if (flag == "--threads") o.threads = number<int>(program, flag, value, 1, 1024);
        else if (flag == "--weights") o.weights = value;
        else if (flag == "--meta") o.meta = value;
        else if (flag == "--max-body-bytes") o.max_body_bytes = number<std::uint64_t>(program, flag, value, 1, 1ULL << 40);
        else usage(program, "unknown option '" + flag + "'");
    }
    if (o.weights.empty() || o.meta.empty()) usage(program, "--weights and --meta are required");
    return o;
}

Loaded load(const Options& options) {
    const auto t0 = std::chrono::steady_clock::now();
    DenseModel model = DenseModel::load(options.weights);
    const rapidjson::Document meta = read_json(options.meta);
    // The metadata is the harness's own file, but a clear message beats undefined behaviour on a bad one
    // (RapidJSON's accessors only assert their preconditions).
    auto bad_meta = [&](const std::string& why) { return std::runtime_error(options.meta + ": " + why); };
    auto member = [&](const rapidjson::Value& obj, const char* key) -> const rapidjson::Value& {
        if (!obj.IsObject() || !obj.HasMember(key)) throw bad_meta(std::string("no '") + key + "'");
        return obj[key];
    };
    const auto& name = member(meta, "name");
    if (!name.IsString()) throw bad_meta("'name' is not a string");
    const auto& n_features = member(meta, "n_features");
    const auto& classes = member(meta, "classes");
    if (!n_features.IsInt() || n_features.GetInt() != model.n_features() || !classes.IsArray() ||
        static_cast<int>(classes.Size()) != model.n_classes())
        throw bad_meta("its features or classes differ from those of " + options.weights);

    // Self-check on the export's sample inputs: the weights must reproduce the reference probabilities.
    const auto& inputs = member(member(meta, "samples"), "inputs");
    const auto& want = member(member(meta, "samples"), "probabilities");
    auto is_table = [](const rapidjson::Value& t, rapidjson::SizeType rows, int cols) {
        if (!t.IsArray() || t.Size() != rows) return false;
        for (const auto& row : t.GetArray()) {
            if (!row.IsArray() || static_cast<int>(row.Size()) != cols) return false;
            for (const auto& v : row.GetArray())
                if (!v.IsNumber()) return false;
        }
        return true;
    };
    if (!inputs.IsArray() || inputs.Empty() || !is_table(inputs, inputs.Size(), model.n_features()) ||
        !is_table(want, inputs.Size(), model.n_classes()))
        throw bad_meta("'samples' is not inputs and probabilities of the model's shape");
    std::vector<float> x;
    for (const auto& row : inputs.GetArray())
        for (const auto& v : row.GetArray()) x.push_back(static_cast<float>(v.GetDouble()));
    Workspace ws;
    const float* got = model.predict_proba(x.data(), static_cast<int>(inputs.Size()), ws);
    double worst = 0;
    for (rapidjson::SizeType r = 0; r < inputs.Size(); ++r)
        for (int c = 0; c < model.n_classes(); ++c)
            worst = std::max(worst, std::abs(got[r * model.n_classes() + c] - want[r][c].GetDouble()));
    if (!(worst <= 1e-5))
        throw std::runtime_error(options.weights + " does not reproduce the reference probabilities in " + options.meta +
                                 " (max |dp| " + std::to_string(worst) + " > 1e-5)");

    Loaded loaded{Service(std::move(model), name.GetString(), Limits{options.max_body_bytes}), 0, 0};
    // Warm-up through the whole request path (parse, predict, answer) on the first sample.
    std::string body = R"({"instances":[[)", answer;
    for (int j = 0; j < loaded.service.model().n_features(); ++j) {
        char buf[32];
        body.append(buf, std::to_chars(buf, buf + sizeof buf, x[j]).ptr).push_back(',');
    }
    body.back() = ']';
    body.append("]}");
    std::vector<double> timings;
    for (int i = 0; i < 31; ++i) {
        const auto t = std::chrono::steady_clock::now();
        if (loaded.service.predict(body, answer) != 200) throw std::runtime_error("warm-up request failed: " + answer);
        timings.push_back(ms_since(t) * 1000);
    }
    std::nth_element(timings.begin(), timings.begin() + 15, timings.end());
    loaded.predict_us = timings[15];
    loaded.load_ms = ms_since(t0);
    return loaded;
}

void log(const std::string& program, const std::string& message) {
    std::cerr << program << ": " << message << " (pid " << getpid() << ")" << std::endl;
}

}  // namespace servebench
