#include <algorithm>
#include <exception>

#include "cni/spec.h"
#include "tests/fuzz/targets.h"

namespace sluice::fuzz {

namespace {

using cni::Command;

void checkConf(std::string_view input, Command cmd, const Violation& violation) {
  auto r = cni::parseNetConf(input, cmd);
  if (!r.ok()) {
    int code = cni::specCode(r.error());
    // Bad input is a decode failure, a version we do not speak, or an invalid config.
    if (code != 1 && code != 6 && code != 7) {
      violation("parseNetConf error with code " + std::to_string(code) + ": " + r.error().message);
    }
    if (r.error().message.empty()) violation("parseNetConf error without a message");
    return;
  }
  const cni::NetConf& c = *r;
  const auto& versions = cni::supportedVersions();
  if (std::find(versions.begin(), versions.end(), c.cniVersion) == versions.end()) {
    violation("accepted unsupported cniVersion \"" + c.cniVersion + "\"");
  }
  if (cmd == Command::Version) return;
  if (c.name.empty() || c.name.find('/') != std::string::npos) {
    violation("accepted network name \"" + c.name + "\"");
  }
  if (c.ipamType.empty() || c.ipamType.find('/') != std::string::npos) {
    violation("accepted ipam.type \"" + c.ipamType + "\"");
  }
  if (c.mtu != 0 && (c.mtu < 68 || c.mtu > 65535))
    violation("accepted mtu " + std::to_string(c.mtu));
  if (c.policyTimeoutMs < 1)
    violation("accepted policyTimeoutMs " + std::to_string(c.policyTimeoutMs));
  if (cmd == Command::Check && !c.prevResult) violation("CHECK accepted without prevResult");
  if (cmd == Command::Gc) {
    if (!c.validAttachments) return violation("GC accepted without valid-attachments");
    for (const auto& a : *c.validAttachments) {
      if (!cni::validateContainerId(a.containerId).ok() || !cni::validateIfname(a.ifname).ok()) {
        violation("GC accepted attachment \"" + a.containerId + "\"/\"" + a.ifname + "\"");
      }
    }
  }
  if (c.prevResult) {
    auto res = cni::decodeResult(*c.prevResult, "prevResult");
    if (!res.ok() && cni::specCode(res.error()) != 6) {
      violation("decodeResult error with code " + std::to_string(cni::specCode(res.error())));
    }
    if (res.ok()) {
      // What decodes re-encodes and decodes to the same addresses.
      for (const std::string& v : versions) {
        auto back = cni::decodeResult(cni::encodeResult(*res, v), "re-encoded");
        if (!back.ok() || back->ips.size() != res->ips.size()) {
          violation("result for " + v + " does not round-trip");
        }
      }
    }
  }
}

}  // namespace

void netConfOne(std::string_view input, const Violation& violation) {
  try {
    for (Command cmd : {Command::Add, Command::Del, Command::Check, Command::Version,
                        Command::Status, Command::Gc}) {
      checkConf(input, cmd, violation);
    }
    // The same text as a delegated IPAM plugin's result.
    auto j = cni::json::parse(input, nullptr, false);
    if (!j.is_discarded()) {
      auto res = cni::decodeResult(j, "ipam result");
      if (!res.ok() && cni::specCode(res.error()) != 6) violation("decodeResult: wrong code");
    }
  } catch (const std::exception& e) {
    violation(std::string("threw: ") + e.what());
  } catch (...) {
    violation("threw a non-exception");
  }
}

}  // namespace sluice::fuzz
