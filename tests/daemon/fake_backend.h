// A datapath backend that records every call and holds what it was told, so daemon tests run
// without root or a kernel. Failures can be injected per operation.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "policyd/datapath/backend.h"

namespace sluice::daemon::testing {

class FakeBackend final : public datapath::Backend {
 public:
  Status attach(const datapath::EndpointAttachment& ep) override {
    std::lock_guard lock(mu_);
    calls_.push_back("attach " + std::to_string(ep.id) + " " + ep.ifname);
    if (failAttach_) return makeError("fake attach failure");
    attached_[ep.id] = ep;
    return Status::Ok();
  }
  Status detach(const datapath::EndpointAttachment& ep) override {
    std::lock_guard lock(mu_);
    calls_.push_back("detach " + std::to_string(ep.id) + " " + ep.ifname);
    attached_.erase(ep.id);
    return Status::Ok();
  }
  Result<bool> attached(const datapath::EndpointAttachment& ep) override {
    std::lock_guard lock(mu_);
    return attached_.contains(ep.id);
  }
  Status apply(const compiler::Diff& diff) override {
    std::lock_guard lock(mu_);
    calls_.push_back("apply " + std::to_string(diff.revision));
    if (failApply_) return makeError("fake apply failure");
    ++applies_;
    for (const auto& e : diff.endpoints) {
      if (e.removed) {
        policies_.erase(e.endpoint);
      } else {
        policies_[e.endpoint] = e.ingressIsolated;
      }
    }
    revision_ = diff.revision;
    return Status::Ok();
  }
  Status sync(const compiler::State& desired) override {
    std::lock_guard lock(mu_);
    calls_.push_back("sync " + std::to_string(desired.revision));
    if (failApply_) return makeError("fake sync failure");
    ++syncs_;
    policies_.clear();
    for (const auto& [id, p] : desired.endpoints) policies_[id] = p.ingressIsolated;
    revision_ = desired.revision;
    return Status::Ok();
  }
  Result<std::vector<datapath::RuleCounter>> counters() override {
    {
      // A slow kernel read (a scrape of a big map): held here until releaseCounters().
      std::unique_lock gate(gateMu_);
      ++countersWaiting_;
      gateCv_.notify_all();
      gateCv_.wait(gate, [&] { return !countersBlocked_; });
      --countersWaiting_;
    }
    std::lock_guard lock(mu_);
    return counters_;
  }

  Result<std::vector<datapath::DropCount>> dropCounts() override {
    std::lock_guard lock(mu_);
    return dropCounts_;
  }
  Result<std::unique_ptr<datapath::FlowEventReader>> openFlowEvents() override {
    return makeError("fake backend: no flow events");
  }
  Result<std::vector<datapath::EndpointAttachment>> endpoints() override {
    std::lock_guard lock(mu_);
    std::vector<datapath::EndpointAttachment> out;
    for (const auto& [id, ep] : attached_) out.push_back(ep);
    return out;
  }

  // Inspection and knobs.
  void blockCounters() {
    std::lock_guard gate(gateMu_);
    countersBlocked_ = true;
  }
  void releaseCounters() {
    {
      std::lock_guard gate(gateMu_);
      countersBlocked_ = false;
    }
    gateCv_.notify_all();
  }
  // Waits until a counters() call is held by blockCounters().
  bool waitCountersBlocked(std::chrono::milliseconds timeout) {
    std::unique_lock gate(gateMu_);
    return gateCv_.wait_for(gate, timeout, [&] { return countersWaiting_ > 0; });
  }
  void setDropCounts(std::vector<datapath::DropCount> d) {
    std::lock_guard lock(mu_);
    dropCounts_ = std::move(d);
  }
  std::vector<std::string> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  bool isAttached(compiler::EndpointId id) const {
    std::lock_guard lock(mu_);
    return attached_.contains(id);
  }
  // endpoint -> ingress isolated, as last applied/synced
  std::map<compiler::EndpointId, bool> policies() const {
    std::lock_guard lock(mu_);
    return policies_;
  }
  int syncs() const {
    std::lock_guard lock(mu_);
    return syncs_;
  }
  int applies() const {
    std::lock_guard lock(mu_);
    return applies_;
  }
  void setFailAttach(bool f) {
    std::lock_guard lock(mu_);
    failAttach_ = f;
  }
  void setFailApply(bool f) {
    std::lock_guard lock(mu_);
    failApply_ = f;
  }
  void setCounters(std::vector<datapath::RuleCounter> c) {
    std::lock_guard lock(mu_);
    counters_ = std::move(c);
  }
  void markAttached(const datapath::EndpointAttachment& ep) {
    std::lock_guard lock(mu_);
    attached_[ep.id] = ep;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> calls_;
  std::map<compiler::EndpointId, datapath::EndpointAttachment> attached_;
  std::map<compiler::EndpointId, bool> policies_;
  std::vector<datapath::RuleCounter> counters_;
  std::vector<datapath::DropCount> dropCounts_;
  uint64_t revision_ = 0;
  int syncs_ = 0;
  int applies_ = 0;
  bool failAttach_ = false;
  bool failApply_ = false;
  std::mutex gateMu_;
  std::condition_variable gateCv_;
  bool countersBlocked_ = false;
  int countersWaiting_ = 0;
};

}  // namespace sluice::daemon::testing
