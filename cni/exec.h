// Running another CNI plugin (a delegated IPAM plugin) the way a runtime would: looked up in
// CNI_PATH, same environment with CNI_COMMAND overridden, config on stdin, result on stdout.
#pragma once

#include <map>
#include <string>

#include "common/result.h"

namespace sluice::cni {

struct PluginRun {
  int exitCode = 0;
  std::string out;
};

// Errors: plugin not found in `cniPath` (kErrInvalidConfig), exec/pipe failures (kErrInternal).
// A non-zero exit is returned as a PluginRun; decodePluginError turns its stdout into an Error.
Result<PluginRun> execPlugin(const std::string& cniPath, const std::string& type,
                             const std::map<std::string, std::string>& env,
                             const std::string& stdinData, int timeoutMs);
Error decodePluginError(const std::string& type, const PluginRun& run);

}  // namespace sluice::cni
