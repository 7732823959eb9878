// Whole-file reads shared by the manifest decoder, the manifest directory source and the
// daemon's state files.
#pragma once

#include <cstddef>
#include <string>

#include "common/result.h"

namespace sluice {

// The default bound on a whole-file read. Manifests and state files are far smaller; the
// largest input we know of is bench/scale's cluster dump for `sluicectl -f` (about 120 MB),
// so the default leaves it room twice over. Callers that know better pass their own.
constexpr size_t kDefaultMaxFileBytes = size_t{256} << 20;

// Reads `path` whole. Only regular files: a FIFO, a device (/dev/zero), a socket or a
// directory is refused at once, without blocking or reading a byte. More than `maxBytes` is
// refused too. Errors read "<path>: cannot read: <reason>" and carry errno as the code
// (ENOENT for a missing file, EINVAL for a file that is not regular, EFBIG when too large).
Result<std::string> readFile(const std::string& path, size_t maxBytes = kDefaultMaxFileBytes);

}  // namespace sluice
