// Command line and start-up shared by both HTTP flavours: options, loading, self-check, warm-up, log line.
#pragma once

#include <cstdint>
#include <string>

#include "contract.h"

namespace servebench {

struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8000;
    int threads = 1;          // request-handling threads: the "workers" knob
    std::string weights;      // model.weights.json
    std::string meta;         // the export's metadata.json: model name and reference samples
    std::uint64_t max_body_bytes = 1 << 20;
};

// Parses argv; prints usage and exits (code 2) on a bad command line, code 0 on --help.
Options parse_options(int argc, char** argv, const char* program);

struct Loaded {
    Service service;
    double load_ms;           // reading, checking and warming the model
    double predict_us;        // median of the warm-up's single-row requests (parse + predict + answer)
};

// Loads the model and its metadata, checks the model reproduces the metadata's reference probabilities
// (so a wrong weights/metadata pair never serves), and warms it up. Throws std::runtime_error.
Loaded load(const Options& options);

// "servebench-cpp: <message> (pid N)" on stderr, like the Python servers' log lines.
void log(const std::string& program, const std::string& message);

}  // namespace servebench
