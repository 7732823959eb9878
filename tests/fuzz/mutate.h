// Deterministic input mutation for the bounded fuzz tests: seeded byte flips, inserts,
// deletions, truncation, splices between seeds, deep nesting and huge numbers. The same seed
// gives the same inputs on every machine, so a failure names a reproducible case.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace sluice::fuzz {

class Mutator {
 public:
  Mutator(std::vector<std::string> seeds, uint64_t seed);

  // A new input: a seed with 1..4 mutations stacked.
  std::string next();
  uint64_t seed() const { return seed_; }

 private:
  std::string mutateOnce(std::string s);
  size_t pick(size_t n) {
    return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  }

  std::vector<std::string> seeds_;
  uint64_t seed_;
  std::mt19937_64 rng_;
};

// Structures that stress recursive decoders: `depth` nested arrays / objects / YAML
// sequences, numbers beyond every integer type, long strings, invalid UTF-8.
std::string nestedJsonArrays(size_t depth);
std::string nestedJsonObjects(size_t depth);
std::string nestedYamlSequences(size_t depth);
std::string nestedYamlFlow(size_t depth);
std::vector<std::string> hostileScalars();

// Runs `one(input, iteration)` on inputs from `m` until `budget` has passed or `maxIterations`
// ran; returns how many ran. The budget keeps CI fast; the cap keeps a fast machine honest.
size_t runFor(Mutator& m, std::chrono::milliseconds budget, size_t maxIterations,
              const std::function<void(const std::string&, size_t)>& one);

// The budget per test: SLUICE_FUZZ_SECONDS if set (longer local runs), else `dflt`.
std::chrono::milliseconds budget(std::chrono::milliseconds dflt);

// Escaped, shortened form of an input for a failure message.
std::string preview(const std::string& input);

}  // namespace sluice::fuzz
