// Runs a program and captures its stdout, stderr and exit status (for the sluicectl CLI tests).
#pragma once

#include <string>
#include <vector>

namespace sluice::ctl::testing {

struct ProcessResult {
  int exitCode = -1;   // -1 when killed by a signal
  int signal = 0;      // the signal that ended it, 0 if it exited
  std::string out;
  std::string err;
};

ProcessResult runProcess(const std::string& program, const std::vector<std::string>& args);

// The built sluicectl with `args`.
ProcessResult runCtl(const std::vector<std::string>& args);

// Absolute path of a fixture under tests/ctl/fixtures.
std::string fixture(const std::string& rel);

}  // namespace sluice::ctl::testing
