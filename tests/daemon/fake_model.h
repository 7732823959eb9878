// A ModelView over a cluster decoded from YAML, for the daemon parts that read the model beside
// the sync path (flow log, per-policy metrics). set() replaces it and bumps the generation.
#pragma once

#include <gtest/gtest.h>

#include <shared_mutex>
#include <string_view>

#include "policyd/daemon/model_view.h"
#include "policyd/model/decode.h"

namespace sluice::daemon::testing {

class FakeModel final : public ModelView {
 public:
  explicit FakeModel(std::string_view yaml) { set(yaml); }
  void set(std::string_view yaml) {
    auto d = model::decodeText(yaml, "test.yaml");
    EXPECT_TRUE(d.errors.empty());
    std::unique_lock lock(mu_);
    cluster_ = std::move(d.cluster);
    ++generation_;
  }
  void readModel(const Reader& fn) const override {
    std::shared_lock lock(mu_);
    ++reads;
    fn(cluster_, generation_);
  }
  mutable int reads = 0;  // how often readers asked

 private:
  mutable std::shared_mutex mu_;
  model::Cluster cluster_;
  uint64_t generation_ = 0;
};

}  // namespace sluice::daemon::testing
