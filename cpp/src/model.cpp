#include "model.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the weights file is little-endian float32, read in place: a little-endian target is needed"
#endif

namespace servebench {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& why) {
    throw std::runtime_error(path + ": " + why);
}

Activation parse_activation(const std::string& path, const std::string& name) {
    if (name == "identity") return Activation::Identity;
    if (name == "relu") return Activation::Relu;
    if (name == "tanh") return Activation::Tanh;
    if (name == "logistic") return Activation::Logistic;
    if (name == "softmax") return Activation::Softmax;
    fail(path, "unknown activation '" + name + "' (known: identity, relu, tanh, logistic, softmax)");
}

int positive_int(const std::string& path, const rapidjson::Value& obj, const char* key) {
    auto it = obj.FindMember(key);
    if (it == obj.MemberEnd() || !it->value.IsInt() || it->value.GetInt() <= 0)
        fail(path, std::string("'") + key + "' must be a positive integer");
    return it->value.GetInt();
}

std::uint64_t offset(const std::string& path, const rapidjson::Value& layer, const char* key) {
    auto it = layer.FindMember(key);
    if (it == layer.MemberEnd() || !it->value.IsUint64() || it->value.GetUint64() % 4 != 0)
        fail(path, std::string("layer '") + key + "' must be a non-negative multiple of 4");
    return it->value.GetUint64();
}

// Reads `count` float32s at byte `at` of the data file, checking they lie inside it.
void read_floats(std::ifstream& data, const std::string& data_path, std::uint64_t size, std::uint64_t at,
                 float* into, std::size_t count) {
    const std::uint64_t bytes = count * sizeof(float);
    if (at > size || bytes > size - at)
        fail(data_path, "is too short (" + std::to_string(size) + " bytes) for the arrays its header names");
    data.seekg(static_cast<std::streamoff>(at));
    if (!data.read(reinterpret_cast<char*>(into), static_cast<std::streamsize>(bytes)))
        fail(data_path, "read error");
}

template <typename M>
void activate(M& h, Activation activation) {
    switch (activation) {
        case Activation::Identity: break;
        case Activation::Relu: h = h.cwiseMax(0.0f); break;
        case Activation::Tanh: h = h.array().tanh(); break;
        // exp(-x) may overflow to +inf for very negative x: 1 / inf = 0, the right limit.
        case Activation::Logistic: h = (1.0f + (-h.array()).exp()).inverse(); break;
        case Activation::Softmax:
            // Row by row, minus the row maximum so exp never overflows. Written out: Eigen's rowwise
            // broadcasts would evaluate the maxima into a heap temporary on every call.
            for (Eigen::Index r = 0; r < h.rows(); ++r) {
                auto row = h.row(r);
                const float top = row.maxCoeff();
                row = (row.array() - top).exp();
                row /= row.sum();
            }
            break;
    }
}

}  // namespace

DenseModel DenseModel::load(const std::string& header_path) {
    std::ifstream header_file(header_path);
    if (!header_file) fail(header_path, "cannot open");
    std::stringstream text;
    text << header_file.rdbuf();
    rapidjson::Document h;
    if (h.Parse(text.str().c_str()).HasParseError() || !h.IsObject()) fail(header_path, "is not a JSON object");

    auto str = [&](const char* key) -> std::string {
        auto it = h.FindMember(key);
        return it != h.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
    };
    if (str("format") != "servebench-dense-v1") fail(header_path, "format is not 'servebench-dense-v1'");
    if (str("dtype") != "float32") fail(header_path, "dtype must be 'float32'");
    if (h.HasMember("byte_order") && str("byte_order") != "little") fail(header_path, "byte_order must be 'little'");

    DenseModel model;
    model.n_features_ = positive_int(header_path, h, "n_features");
    if (!h.HasMember("classes") || !h["classes"].IsArray() || h["classes"].Size() < 2)
        fail(header_path, "'classes' must be a list of at least 2 integer labels");
    for (const auto& c : h["classes"].GetArray()) {
        if (!c.IsInt64()) fail(header_path, "'classes' must be integer labels");
        model.classes_.push_back(c.GetInt64());
    }
    if (!h.HasMember("layers") || !h["layers"].IsArray() || h["layers"].Empty())
        fail(header_path, "'layers' must be a non-empty list");

    // The data file sits next to the header; no directories in its name.
    const std::string data_name = str("data_file");
    if (data_name.empty() || data_name.find('/') != std::string::npos)
        fail(header_path, "'data_file' must be a file name next to the header");
    const auto slash = header_path.rfind('/');
    const std::string data_path = (slash == std::string::npos ? "" : header_path.substr(0, slash + 1)) + data_name;
    std::ifstream data(data_path, std::ios::binary | std::ios::ate);
    if (!data) fail(data_path, "cannot open");
    const auto size = static_cast<std::uint64_t>(data.tellg());

    const auto& layers = h["layers"].GetArray();
    int width = model.n_features_;
    model.max_width_ = 2;  // room for [1 - p, p] of a binary model
    for (rapidjson::SizeType i = 0; i < layers.Size(); ++i) {
        const auto& spec = layers[i];
        if (!spec.IsObject()) fail(header_path, "a layer must be an object");
        const int in = positive_int(header_path, spec, "in"), out = positive_int(header_path, spec, "out");
        if (in != width) fail(header_path, "layer " + std::to_string(i) + " takes " + std::to_string(in) +
                                               " inputs, the previous layer gives " + std::to_string(width));
        auto act = spec.FindMember("activation");
        if (act == spec.MemberEnd() || !act->value.IsString()) fail(header_path, "a layer needs an 'activation'");
        Layer layer{RowMatrix(out, in), Eigen::RowVectorXf(out), parse_activation(header_path, act->value.GetString())};
        read_floats(data, data_path, size, offset(header_path, spec, "weights_offset"), layer.weights.data(),
                    static_cast<std::size_t>(out) * in);
        read_floats(data, data_path, size, offset(header_path, spec, "bias_offset"), layer.bias.data(), out);
        model.layers_.push_back(std::move(layer));
        width = out;
        model.max_width_ = std::max(model.max_width_, width);
    }

    const Activation last = model.layers_.back().activation;
    const bool softmax_out = last == Activation::Softmax && width == model.n_classes();
    const bool binary_out = last == Activation::Logistic && width == 1 && model.n_classes() == 2;
    if (!softmax_out && !binary_out)
        fail(header_path, "the last layer must be softmax over the classes, or logistic with one output for two classes");
    for (std::size_t i = 0; i + 1 < model.layers_.size(); ++i)
        if (model.layers_[i].activation == Activation::Softmax) fail(header_path, "softmax is only allowed on the last layer");
    return model;
}

std::size_t DenseModel::parameter_count() const {
    std::size_t n = 0;
    for (const Layer& l : layers_) n += static_cast<std::size_t>(l.weights.size() + l.bias.size());
    return n;
}

const float* DenseModel::predict_proba(const float* x, int rows, Workspace& ws) const {
    const std::size_t need = static_cast<std::size_t>(rows) * max_width_;
    if (ws.a.size() < need) {
        ws.a.resize(need);
        ws.b.resize(need);
    }
    const float* in = x;
    float* out = ws.a.data();
    float* spare = ws.b.data();
    for (const Layer& layer : layers_) {
        Eigen::Map<const RowMatrix> h_in(in, rows, layer.weights.cols());
        Eigen::Map<RowMatrix> h(out, rows, layer.weights.rows());
        // One matrix product per layer for the whole batch; with one row Eigen runs a matrix-vector product.
        h.noalias() = h_in * layer.weights.transpose();
        h.rowwise() += layer.bias;
        activate(h, layer.activation);
        in = out;
        std::swap(out, spare);
    }
    if (layers_.back().activation == Activation::Logistic) {  // binary: p = P(classes[1]) -> [1 - p, p]
        for (int r = 0; r < rows; ++r) {
            out[2 * r] = 1.0f - in[r];
            out[2 * r + 1] = in[r];
        }
        return out;
    }
    return in;
}

}  // namespace servebench
