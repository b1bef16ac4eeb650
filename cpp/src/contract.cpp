#include "contract.h"

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <vector>

namespace servebench {
namespace {

// Requests are parsed into a DOM whose nodes and parse stack come from per-thread pools over fixed
// buffers, cleared after each request: a typical request allocates nothing. Only big batches (more than
// ~1500 numbers) spill into heap chunks, freed again by Clear().
using Pool = rapidjson::MemoryPoolAllocator<>;
using Document = rapidjson::GenericDocument<rapidjson::UTF8<>, Pool, Pool>;
// Not kParseFullPrecisionFlag: it makes Python's 17-digit numbers take a big-integer path (a tenth of
// the server's CPU time), and the fast path is off by at most a few units of the last place of a double,
// far below the float32 each input becomes. Encoding check: invalid UTF-8 in a string is invalid JSON for
// Python too. NaN and Infinity are rejected (not JSON) because kParseNanAndInfFlag is off. Iterative: the
// recursive parser would overflow the thread's stack on a body of a million '['.
constexpr unsigned kParseFlags = rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag;
// Deeper nesting is invalid JSON to orjson (the Python servers' parser), and so here: the same answers.
constexpr int kMaxDepth = 1024;

// The document's SAX handler, stopping the parse past kMaxDepth.
class DepthLimited {
public:
    explicit DepthLimited(Document& doc) : doc_(doc) {}
    bool Null() { return doc_.Null(); }
    bool Bool(bool b) { return doc_.Bool(b); }
    bool Int(int i) { return doc_.Int(i); }
    bool Uint(unsigned u) { return doc_.Uint(u); }
    bool Int64(std::int64_t i) { return doc_.Int64(i); }
    bool Uint64(std::uint64_t u) { return doc_.Uint64(u); }
    bool Double(double d) { return doc_.Double(d); }
    bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) { return doc_.RawNumber(s, n, copy); }
    bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc_.String(s, n, copy); }
    bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc_.Key(s, n, copy); }
    bool StartObject() { return ++depth_ <= kMaxDepth && doc_.StartObject(); }
    bool EndObject(rapidjson::SizeType n) { --depth_; return doc_.EndObject(n); }
    bool StartArray() { return ++depth_ <= kMaxDepth && doc_.StartArray(); }
    bool EndArray(rapidjson::SizeType n) { --depth_; return doc_.EndArray(n); }

private:
    Document& doc_;
    int depth_ = 0;
};

struct Scratch {
    std::vector<char> value_buffer = std::vector<char>(64 << 10);
    std::vector<char> stack_buffer = std::vector<char>(32 << 10);
    Pool values{value_buffer.data(), value_buffer.size()};
    Pool stack{stack_buffer.data(), stack_buffer.size()};
    std::vector<float> x;  // the request's instances, rows x n_features
    Workspace ws;
};

Scratch& scratch() {
    thread_local Scratch s;
    return s;
}

// Parses `body` into `doc`; false if it is not JSON. The whole body must be the document: RapidJSON
// would take a NUL byte after it for the end of the input.
bool parse(std::string_view body, Document& doc, Pool& stack) {
    rapidjson::MemoryStream bytes(body.data(), body.size());
    rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(bytes);
    bool ok = false;
    auto generate = [&](Document& target) {
        rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>, Pool> reader(&stack);
        DepthLimited handler(target);
        ok = !reader.Parse<kParseFlags>(in, handler).IsError() && in.Tell() == body.size();
        return ok;
    };
    doc.Populate(generate);
    return ok;
}

void append_escaped(std::string& out, std::string_view text) {  // the inside of a JSON string
    for (char c : text) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(c);
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out.append(buf);
        } else {
            out.push_back(c);
        }
    }
}

int error(int status, std::string_view message, std::string& out) {
    out.assign(R"({"error":")");
    append_escaped(out, message);
    out.append(R"("})");
    return status;
}

template <typename T>
void append_number(std::string& out, T value) {
    char buf[32];
    // Shortest text that reads back as the same float32 (ints: exact): 0.33333334, 1e-05.
    auto end = std::to_chars(buf, buf + sizeof buf, value).ptr;
    out.append(buf, end);
}

void write_answer(const DenseModel& model, const float* proba, std::size_t rows, std::string& out) {
    const int k = model.n_classes();
    out.assign(R"({"predictions":[)");
    for (std::size_t r = 0; r < rows; ++r) {
        const float* p = proba + r * k;
        int best = 0;  // first maximum, as numpy's argmax
        for (int c = 1; c < k; ++c)
            if (p[c] > p[best]) best = c;
        if (r) out.push_back(',');
        append_number(out, model.classes()[best]);
    }
    out.append(R"(],"probabilities":[)");
    for (std::size_t r = 0; r < rows; ++r) {
        out.append(r ? ",[" : "[");
        for (int c = 0; c < k; ++c) {
            if (c) out.push_back(',');
            append_number(out, proba[r * k + c]);
        }
        out.push_back(']');
    }
    out.append("]}");
}

}  // namespace

Route route(std::string_view method, std::string_view target) {
    const std::string_view path = target.substr(0, target.find('?'));
    if (path == "/predict") return method == "POST" ? Route::Predict : Route::MethodNotAllowed;
    if (path == "/health") return method == "GET" ? Route::Health : Route::MethodNotAllowed;
    return Route::NotFound;
}

int Service::body_too_large(std::uint64_t bytes, std::string& out) const {
    const std::string limit = std::to_string(limits_.max_body_bytes);
    const std::string size = bytes ? std::to_string(bytes) : "more than " + limit;
    return error(413, "body of " + size + " bytes exceeds the limit of " + limit, out);
}

int Service::predict(std::string_view body, std::string& out) const {
    if (body.size() > limits_.max_body_bytes) return body_too_large(body.size(), out);
    Scratch& s = scratch();
    struct ClearPools {  // runs after `doc` is destroyed: declared before it
        Scratch& s;
        ~ClearPools() { s.values.Clear(); s.stack.Clear(); }
    } clear_pools{s};
    Document doc(&s.values, 4096, &s.stack);
    if (!parse(body, doc, s.stack)) return error(400, "body is not valid JSON", out);

    const rapidjson::Value* rows = nullptr;
    if (doc.IsObject())
        for (const auto& member : doc.GetObject())
            if (member.name == "instances") rows = &member.value;  // the last one wins, as in Python's dict
    if (!rows) return error(400, R"(expected a JSON object {"instances": [[...], ...]})", out);
    if (!rows->IsArray() || rows->Empty()) return error(422, "'instances' must be a non-empty list of rows", out);
    const std::size_t n_rows = rows->Size();
    if (n_rows > limits_.max_batch_rows)
        return error(413, "batch of " + std::to_string(n_rows) + " rows exceeds the limit of " +
                              std::to_string(limits_.max_batch_rows), out);

    const int n = model_.n_features();
    if (s.x.size() < n_rows * n) s.x.resize(n_rows * n);
    bool finite = true;  // checked after the shape of every row, as in Python
    for (std::size_t i = 0; i < n_rows; ++i) {
        const rapidjson::Value& row = (*rows)[static_cast<rapidjson::SizeType>(i)];
        if (!row.IsArray() || row.Size() != static_cast<rapidjson::SizeType>(n))
            return error(422, "instances[" + std::to_string(i) + "] must be a list of " + std::to_string(n) + " numbers", out);
        float* x = s.x.data() + i * n;
        for (int j = 0; j < n; ++j) {
            const rapidjson::Value& v = row[j];
            if (!v.IsNumber())  // true, "1", null, [] are not numbers
                return error(422, "instances[" + std::to_string(i) + "] must contain only numbers", out);
            x[j] = static_cast<float>(v.GetDouble());  // 1e39 becomes inf: rejected below
            finite &= std::isfinite(x[j]);
        }
    }
    if (!finite) return error(422, "instances must be finite numbers within float32 range", out);

    write_answer(model_, model_.predict_proba(s.x.data(), static_cast<int>(n_rows), s.ws), n_rows, out);
    return 200;
}

int Service::health(std::string& out) const {
    out.assign(R"({"status":"ok","model":")");
    append_escaped(out, name_);
    out.append(R"(","inference":"inline"})");
    return 200;
}

int Service::not_found(std::string& out) { return error(404, "not found", out); }
int Service::method_not_allowed(std::string& out) { return error(405, "method not allowed", out); }
int Service::internal_error(std::string& out) { return error(500, "internal error", out); }

}  // namespace servebench
