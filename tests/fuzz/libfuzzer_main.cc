// libFuzzer entry for one target (chosen at compile time), with the same property checks as
// the bounded tests: a violation aborts so libFuzzer saves the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto violation = [](const std::string& what) {
    std::fprintf(stderr, "property violated: %s\n", what.c_str());
    std::abort();
  };
#if defined(SLUICE_FUZZ_TARGET_manifest)
  sluice::fuzz::manifestOne(input, violation);
#elif defined(SLUICE_FUZZ_TARGET_netconf)
  sluice::fuzz::netConfOne(input, violation);
#elif defined(SLUICE_FUZZ_TARGET_endpoint)
  sluice::fuzz::endpointLineOne(input, violation);
#else
#error "define SLUICE_FUZZ_TARGET_<name>"
#endif
  return 0;
}
