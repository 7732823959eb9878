#include "common/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace sluice {

void initLogging(const std::string& name, const std::string& path, const std::string& level) {
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (path.empty() || path == "-") {
      logger = spdlog::stderr_logger_mt(name);
    } else {
      logger = spdlog::basic_logger_mt(name, path);
    }
  } catch (const spdlog::spdlog_ex&) {
    logger = spdlog::stderr_logger_mt(name + "-fallback");
  }
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %n %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace sluice
