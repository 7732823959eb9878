// GoogleTest glue for the bounded fuzz runs: a Violation that fails the test with the input
// that caused it (escaped), and the seeds every run uses.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "tests/fuzz/mutate.h"
#include "tests/fuzz/targets.h"

namespace sluice::fuzz {

// Fixed: a failure reproduces with the same seed and iteration on any machine.
inline constexpr uint64_t kSeeds[] = {0x51u, 0x5eedu, 0xc0ffeeu};
// Per seed. Three seeds, so about 3 s per target (longer under sanitizers only if the
// iteration cap is not reached first).
inline constexpr std::chrono::milliseconds kBudgetPerSeed{1000};
inline constexpr size_t kMaxIterationsPerSeed = 20000;
// Far above any sane decode of a 1 MiB input, even under sanitizers.
inline constexpr std::chrono::milliseconds kSlowInput{2000};
// Past this the input is taken as a hang and the binary exits (see Watchdog).
inline constexpr std::chrono::milliseconds kHangInput{5000};

// SLUICE_FUZZ_ARTIFACTS=DIR keeps each failing input as DIR/<test>-<seed>-<iteration>.
inline void saveArtifact(const std::string& input, uint64_t seed, size_t iteration) {
  const char* dir = std::getenv("SLUICE_FUZZ_ARTIFACTS");
  if (!dir || !*dir) return;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(dir) + "/" + (info ? info->name() : "fuzz") + "-" +
                     std::to_string(seed) + "-" + std::to_string(iteration);
  std::ofstream(name, std::ios::binary) << input;
}

inline Violation failWith(const std::string& input, uint64_t seed, size_t iteration) {
  return [&input, seed, iteration](const std::string& what) {
    saveArtifact(input, seed, iteration);
    ADD_FAILURE() << what << "\n  seed=" << seed << " iteration=" << iteration
                  << "\n  input: " << preview(input);
  };
}

// Aborts the whole test binary when one input runs longer than `limit`: a decoder stuck in
// a loop that allocates (yaml-cpp has had several) would otherwise eat the machine's memory
// before the per-input timing below ever sees it. The input is printed and kept first.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::milliseconds limit)
      : limit_(limit), thread_([this](std::stop_token st) { watch(st); }) {}
  // The input now running (must outlive the call to idle()).
  void busy(const std::string* input, uint64_t seed, size_t iteration) {
    std::lock_guard lock(mu_);
    input_ = input;
    seed_ = seed;
    iteration_ = iteration;
    since_ = std::chrono::steady_clock::now();
  }
  void idle() {
    std::lock_guard lock(mu_);
    input_ = nullptr;
  }

 private:
  void watch(std::stop_token st) {
    while (!st.stop_requested()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::lock_guard lock(mu_);
      if (input_ && std::chrono::steady_clock::now() - since_ > limit_) {
        saveArtifact(*input_, seed_, iteration_);
        std::fprintf(stderr,
                     "fuzz watchdog: one input ran longer than %lld ms (hang)\n  seed=%llu "
                     "iteration=%zu\n  input: %s\n",
                     static_cast<long long>(limit_.count()), static_cast<unsigned long long>(seed_),
                     iteration_, preview(*input_).c_str());
        std::fflush(stderr);
        std::_Exit(3);
      }
    }
  }

  std::chrono::milliseconds limit_;
  std::mutex mu_;
  const std::string* input_ = nullptr;
  uint64_t seed_ = 0;
  size_t iteration_ = 0;
  std::chrono::steady_clock::time_point since_;
  std::jthread thread_;
};

// Runs `target` over mutations of `seeds` for each fixed seed; stops a seed at its first
// failing input so one bug does not drown the log. `accept` filters inputs (all by default).
template <typename Target>
void fuzzBounded(const std::vector<std::string>& seeds, Target target,
                 const std::function<bool(const std::string&)>& accept = nullptr) {
  Watchdog watchdog(kHangInput);
  for (uint64_t seed : kSeeds) {
    Mutator m(seeds, seed);
    bool failed = false;
    size_t ran = runFor(
        m, budget(kBudgetPerSeed), kMaxIterationsPerSeed, [&](const std::string& input, size_t i) {
          if (failed || (accept && !accept(input))) return;
          bool any = false;
          auto t0 = std::chrono::steady_clock::now();
          watchdog.busy(&input, seed, i);
          target(input, [&](const std::string& what) {
            any = true;
            failWith(input, seed, i)(what);
          });
          watchdog.idle();
          // "Never a hang": one input must not take seconds.
          auto took = std::chrono::steady_clock::now() - t0;
          if (took > kSlowInput) {
            any = true;
            failWith(input, seed,
                     i)("took " +
                        std::to_string(
                            std::chrono::duration_cast<std::chrono::milliseconds>(took).count()) +
                        " ms");
          }
          failed = any;
        });
    EXPECT_GT(ran, 0u);
    ::testing::Test::RecordProperty("iterations_seed_" + std::to_string(seed), std::to_string(ran));
    std::printf("fuzz seed=%llu iterations=%zu\n", static_cast<unsigned long long>(seed), ran);
  }
}

}  // namespace sluice::fuzz
