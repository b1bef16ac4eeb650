// The model of a "servebench dense v1" export (see cpp/README.md): dense layers, float32, Eigen.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

namespace servebench {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

enum class Activation { Identity, Relu, Tanh, Logistic, Softmax };

struct Layer {
    RowMatrix weights;             // out x in: one output unit's weights contiguous, as in the file
    Eigen::RowVectorXf bias;       // out
    Activation activation;
};

// Per-thread scratch memory of a forward pass. It only grows (to the largest batch seen), so a
// thread serving requests allocates nothing once warm.
struct Workspace {
    std::vector<float> a, b;       // activations, ping-pong between layers
};

class DenseModel {
public:
    // Reads `header_path` (model.weights.json) and the data file it names; throws std::runtime_error
    // naming the file and the problem.
    static DenseModel load(const std::string& header_path);

    int n_features() const { return n_features_; }
    int n_classes() const { return static_cast<int>(classes_.size()); }
    const std::vector<std::int64_t>& classes() const { return classes_; }
    std::size_t parameter_count() const;

    // Class probabilities of `rows` inputs (`x` is rows x n_features, row-major). The result,
    // rows x n_classes row-major, lives in `ws` until its next use.
    const float* predict_proba(const float* x, int rows, Workspace& ws) const;

private:
    int n_features_ = 0;
    int max_width_ = 0;
    std::vector<std::int64_t> classes_;
    std::vector<Layer> layers_;
};

}  // namespace servebench
