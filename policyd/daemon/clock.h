// Time as the daemon's decisions see it (waits, retries). Injected so tests move time by hand
// instead of sleeping.
#pragma once

#include <chrono>
#include <mutex>

namespace sluice::daemon {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
};

// Starts at an arbitrary point; only advance() moves it.
class ManualClock final : public Clock {
 public:
  TimePoint now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  void advance(std::chrono::nanoseconds d) {
    std::lock_guard lock(mu_);
    now_ += d;
  }

 private:
  mutable std::mutex mu_;
  TimePoint now_ = TimePoint(std::chrono::hours(1));
};

}  // namespace sluice::daemon
