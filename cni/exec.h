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
  // The plugin closed its stdin before taking the whole configuration (EPIPE on our side).
  bool stdinRefused = false;
};

// Errors: plugin not found in `cniPath` (kErrInvalidConfig), exec/pipe failures (kErrInternal),
// no exit within `timeoutMs` (kErrTryAgainLater), stdout beyond kMaxPluginOutput, and a plugin
// that exited 0 without reading its configuration (kErrInternal: its "result" answers nothing).
// A non-zero exit is returned as a PluginRun; decodePluginError turns its stdout into an Error.
// The caller must ignore SIGPIPE (main does); the plugin runs with the default disposition.
constexpr size_t kMaxPluginOutput = 4 << 20;
Result<PluginRun> execPlugin(const std::string& cniPath, const std::string& type,
                             const std::map<std::string, std::string>& env,
                             const std::string& stdinData, int timeoutMs);
Error decodePluginError(const std::string& type, const PluginRun& run);

}  // namespace sluice::cni
