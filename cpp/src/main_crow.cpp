// servebench-cpp-crow: the same contract and core as servebench-cpp, over the Crow web framework.
//
// Only the HTTP layer differs, so the two binaries measure Crow against hand-written Beast. Crow runs
// --threads handler threads (each connection stays on the thread it was given) plus one acceptor thread.
// Unlike the Beast flavour, Crow reads a whole body before any handler runs: the size limit is checked
// after the fact, with the same answer.
#include <crow.h>

#include <string>

#include "cli.h"

namespace {

constexpr const char* kProgram = "servebench-cpp-crow";

void reply(crow::response& res, int status) {
    res.code = status;
    res.set_header("Content-Type", "application/json");
    res.end();
}

}  // namespace

int main(int argc, char** argv) {
    const servebench::Options options = servebench::parse_options(argc, argv, kProgram);
    try {
        const servebench::Loaded loaded = servebench::load(options);
        const servebench::Service& service = loaded.service;

        crow::SimpleApp app;
        app.loglevel(crow::LogLevel::Warning);  // no line per request
        // No "Server" header. Crow 1.3.3 writes an answer as one buffer per header part, and Asio sends at
        // most 16 buffers per system call: with Content-Type, Server and the "connection" header Crow
        // adds on keep-alive connections, the answer takes two writes, and Nagle's algorithm holds the
        // second until the client's delayed ACK, 40 ms later. Crow sets no TCP_NODELAY before its
        // tcp_nodelay() option (unreleased after 1.3.3); without this header every answer fits one write.
        app.server_name("");

        CROW_ROUTE(app, "/predict").methods(crow::HTTPMethod::POST)([&service](const crow::request& req, crow::response& res) {
            int status;
            try {
                status = service.predict(req.body, res.body);
            } catch (const std::exception&) {
                status = servebench::Service::internal_error(res.body);
            }
            reply(res, status);
        });
        CROW_ROUTE(app, "/health").methods(crow::HTTPMethod::GET)([&service](const crow::request&, crow::response& res) {
            reply(res, service.health(res.body));
        });
        // Crow sends an unknown path or a known path with another method here, code already set.
        CROW_CATCHALL_ROUTE(app)([](const crow::request&, crow::response& res) {
            reply(res, res.code == 405 ? servebench::Service::method_not_allowed(res.body)
                                       : servebench::Service::not_found(res.body));
        });

        servebench::log(kProgram, "model " + service.name() + " (" + std::to_string(service.model().parameter_count()) +
                                      " parameters) loaded in " + std::to_string(static_cast<int>(loaded.load_ms)) +
                                      " ms, median predict " + std::to_string(static_cast<int>(loaded.predict_us + 0.5)) +
                                      " us; " + std::to_string(options.threads) + " threads on " + options.host + ":" +
                                      std::to_string(options.port));
        // concurrency = handler threads + Crow's acceptor thread. Crow stops on SIGINT and SIGTERM.
        app.bindaddr(options.host).port(options.port).concurrency(options.threads + 1).run();
        if (!app.is_bound()) {  // run() returns at once when it cannot listen (Crow logged why)
            servebench::log(kProgram, "cannot listen on " + options.host + ":" + std::to_string(options.port));
            return 1;
        }
        return 0;
    } catch (const std::exception& e) {
        servebench::log(kProgram, std::string("cannot start: ") + e.what());
        return 1;
    }
}
