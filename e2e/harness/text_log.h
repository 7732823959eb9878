// Reading the output files of probes and servers the e2e suites start: they are polled while
// the process still writes them, so a missing or partial file is simply "no lines yet".
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace sluice::e2e {

// The whole file, or "" when it does not exist (yet).
inline std::string readLog(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// How many lines of `text` contain `needle`.
inline int countLines(const std::string& text, const std::string& needle) {
  int n = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) n += line.find(needle) != std::string::npos;
  return n;
}

}  // namespace sluice::e2e
