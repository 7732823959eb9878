// Structured logging: one line per event, key=value fields, the object first.
#pragma once

#include <string>

namespace sluice {

// Configures the default spdlog logger. `path` empty or "-" logs to stderr; otherwise appends
// to the file. `level` is an spdlog level name ("info", "debug", ...).
void initLogging(const std::string& name, const std::string& path, const std::string& level);

}  // namespace sluice
