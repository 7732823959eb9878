// Writes to /proc/sys. Network sysctls resolve against the network namespace of the thread
// that opens the file, so call these from the namespace they are meant for.
#pragma once

#include <string>

#include "common/result.h"

namespace sluice::sysctl {

// `key` in dotted or slashed form: "net.ipv4.conf.sl0123.forwarding". Interface names may
// contain dots, so callers that build a key from a name should use the slashed form.
Status write(const std::string& key, const std::string& value);
Result<std::string> read(const std::string& key);

}  // namespace sluice::sysctl
