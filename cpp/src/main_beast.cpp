// servebench-cpp: the servebench contract over Boost.Beast (HTTP/1.1, keep-alive) on Boost.Asio.
//
// Threading: one io_context run by --threads threads, one acceptor. Any idle thread picks up the next
// ready connection, so a thread busy with a slow prediction (mlp: ~1-2 ms) never holds up requests of
// other connections while another thread idles. The alternative, an io_context and an acceptor per
// thread sharing the port with SO_REUSEPORT, pins each connection to a thread by a hash: with a few long-lived keep-alive
// connections (a load generator's users) the split is uneven and stays so. The shared reactor costs a
// little locking, which is small at a thread count near the core count.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli.h"

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr const char* kProgram = "servebench-cpp";
// Idle keep-alive connections and stalled clients are dropped after this long.
constexpr auto kTimeout = std::chrono::seconds(60);

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket&& socket, const servebench::Service& service)
        : socket_(std::move(socket)), timer_(socket_.get_executor()), service_(service) {
        res_.set(http::field::content_type, "application/json");  // every answer is JSON; set once
        buffer_.reserve(4096);  // a typical request in one read
    }

    void start() {  // called by the acceptor: continue on the connection's own executor (its strand)
        net::dispatch(socket_.get_executor(), [self = shared_from_this()] {
            self->deadline_ = std::chrono::steady_clock::now() + kTimeout;
            self->watch();
            self->read_header();
        });
    }

private:
    // Timeouts by deadline: each request only moves `deadline_` (no system call); the one timer wakes up
    // at most once per kTimeout. (Beast's tcp_stream re-arms a timer on every read and write: three
    // timerfd_settime calls and extra epoll wake-ups per request.)
    void watch() {
        timer_.expires_at(deadline_);
        timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (ec) return;  // cancelled: the connection closed
            if (std::chrono::steady_clock::now() >= self->deadline_) return self->close();
            self->watch();
        });
    }

    void read_header() {
        deadline_ = std::chrono::steady_clock::now() + kTimeout;
        // Parse into the previous request: its body string keeps its capacity, so a steady stream of
        // requests does not allocate a new body buffer each time.
        req_.base().clear();
        req_.body().clear();
        parser_.emplace(std::move(req_));
        // The limit is checked on the header, with the contract's message. (Not boost::none: Boost 1.74
        // compares a length with the empty optional and always fails.)
        parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
        http::async_read_header(socket_, buffer_, *parser_,
                                [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    void on_header(beast::error_code ec) {
        if (ec) return close();  // end of stream, timeout, malformed HTTP: nothing sensible to answer
        const auto& head = parser_->get();
        version_ = head.version();
        route_ = servebench::route(std::string_view(head.method_string().data(), head.method_string().size()),
                                   std::string_view(head.target().data(), head.target().size()));
        const auto length = parser_->content_length();
        const auto limit = service_.limits().max_body_bytes;
        if (length && *length > limit) {  // answer without reading the body, then close
            const int status = route_ == servebench::Route::Predict ? service_.body_too_large(*length, res_.body())
                                                                    : answer_without_body(res_.body());
            return respond(status, false, false);
        }
        parser_->body_limit(limit);  // chunked bodies: stop at the limit
        if (http::token_list(head[http::field::expect]).exists("100-continue") && !parser_->is_done()) {
            // curl and others wait for this before sending a body; most load generators do not ask.
            static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
            return net::async_write(socket_, net::buffer(kContinue, sizeof kContinue - 1),
                                    [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                        if (ec) return self->close();
                                        self->read_body();
                                    });
        }
        read_body();
    }

    void read_body() {
        http::async_read(socket_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_body(ec); });
    }

    void on_body(beast::error_code ec) {
        if (ec == http::error::body_limit)  // a chunked body over the limit: its length is unknown
            return respond(service_.body_too_large(0, res_.body()), false, false);
        if (ec) return close();
        req_ = parser_->release();
        int status;
        try {
            status = route_ == servebench::Route::Predict ? service_.predict(req_.body(), res_.body())
                                                          : answer_without_body(res_.body());
        } catch (const std::exception&) {  // e.g. out of memory: answer, keep serving
            status = servebench::Service::internal_error(res_.body());
        }
        respond(status, req_.keep_alive(), true);
    }

    int answer_without_body(std::string& out) const {
        switch (route_) {
            case servebench::Route::Health: return service_.health(out);
            case servebench::Route::MethodNotAllowed: return servebench::Service::method_not_allowed(out);
            default: return servebench::Service::not_found(out);
        }
    }

    // `body_read`: whether the request was read to its end; if not, the connection cannot be reused.
    void respond(int status, bool keep_alive, bool body_read) {
        res_.result(static_cast<unsigned>(status));
        res_.version(version_);
        res_.keep_alive(keep_alive && body_read);
        res_.prepare_payload();
        deadline_ = std::chrono::steady_clock::now() + kTimeout;
        http::async_write(socket_, res_, [self = shared_from_this(), body_read](beast::error_code ec, std::size_t) {
            if (ec) return self->close();
            if (!self->res_.keep_alive()) return body_read ? self->close() : self->linger();
            self->read_header();
        });
    }

    // After answering a request whose body was left unread: stop sending, and read and discard what the
    // client still sends until it closes (at most 5 s). Closing at once with unread data makes the kernel
    // send a reset, and the client may lose the answer while it is still sending its body.
    void linger() {
        beast::error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
        deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        timer_.cancel();  // re-armed for the shorter deadline
        watch();
        drain();
    }

    void drain() {
        socket_.async_read_some(buffer_.prepare(64 << 10), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return self->close();
            self->drain();
        });
    }

    void close() {
        beast::error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);  // cancels a pending read or write
        timer_.cancel();         // releases the session
    }

    tcp::socket socket_;
    net::steady_timer timer_;
    std::chrono::steady_clock::time_point deadline_;
    beast::flat_buffer buffer_;  // bytes read past the current request (pipelining) stay here
    http::request<http::string_body> req_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;  // reused: headers and body capacity carry over
    servebench::Route route_ = servebench::Route::NotFound;
    unsigned version_ = 11;
    const servebench::Service& service_;
};

class Listener {
public:
    Listener(net::io_context& ioc, const tcp::endpoint& endpoint, const servebench::Service& service, bool strands)
        : ioc_(ioc), acceptor_(ioc), service_(service), strands_(strands) {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(net::socket_base::reuse_address(true));  // restart right after a stop
        acceptor_.bind(endpoint);
        acceptor_.listen(net::socket_base::max_listen_connections);
    }

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    void accept() {
        // With several threads each connection gets a strand, so its handlers (I/O and its timer) never
        // run concurrently. With one thread nothing runs concurrently: a strand would only cost a lock.
        auto executor = strands_ ? net::any_io_executor(net::make_strand(ioc_)) : net::any_io_executor(ioc_.get_executor());
        acceptor_.async_accept(executor, [this](beast::error_code ec, tcp::socket socket) {
            if (ec == net::error::operation_aborted) return;  // closed at shutdown
            if (!ec) {
                socket.set_option(tcp::no_delay(true), ec);
                std::make_shared<Session>(std::move(socket), service_)->start();
            }
            accept();  // errors such as EMFILE: keep accepting
        });
    }
    void close() {
        beast::error_code ignored;
        acceptor_.close(ignored);
    }

private:
    net::io_context& ioc_;
    tcp::acceptor acceptor_;
    const servebench::Service& service_;
    bool strands_;
};

}  // namespace

int main(int argc, char** argv) {
    const servebench::Options options = servebench::parse_options(argc, argv, kProgram);
    try {
        const servebench::Loaded loaded = servebench::load(options);
        net::io_context ioc(options.threads);
        Listener listener(ioc, tcp::endpoint(net::ip::make_address(options.host), options.port), loaded.service,
                          options.threads > 1);
        listener.accept();

        // SIGTERM (the harness's stop) and SIGINT: stop accepting, stop the threads, exit 0.
        net::signal_set signals(ioc, SIGINT, SIGTERM);
        signals.async_wait([&](beast::error_code, int) {
            listener.close();
            ioc.stop();
        });

        servebench::log(kProgram, "model " + loaded.service.name() + " (" +
                                      std::to_string(loaded.service.model().parameter_count()) + " parameters) loaded in " +
                                      std::to_string(static_cast<int>(loaded.load_ms)) + " ms, median predict " +
                                      std::to_string(static_cast<int>(loaded.predict_us + 0.5)) + " us; " +
                                      std::to_string(options.threads) + " threads on " + options.host + ":" +
                                      std::to_string(listener.port()));
        std::vector<std::thread> threads;
        for (int i = 1; i < options.threads; ++i) threads.emplace_back([&ioc] { ioc.run(); });
        ioc.run();
        for (auto& t : threads) t.join();
        return 0;
    } catch (const std::exception& e) {
        servebench::log(kProgram, std::string("cannot start: ") + e.what());
        return 1;
    }
}
