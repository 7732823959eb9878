// Whole-file reads shared by the manifest decoder, the manifest directory source and the
// daemon's state files.
#pragma once

#include <string>

#include "common/result.h"

namespace sluice {

// Reads `path` whole. Errors read "<path>: cannot read: <reason>" and carry errno as the code.
Result<std::string> readFile(const std::string& path);

}  // namespace sluice
