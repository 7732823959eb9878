// sluicectl as a function: arguments in, output on two streams, exit code out. The binary's main
// only forwards argv; tests call run() directly as well as the binary.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace sluice::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFindings = 1;  // lint found something
inline constexpr int kExitBadInput = 2;  // usage errors, unreadable or invalid manifests

// `args` excludes the program name.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace sluice::ctl
