// `sluice`: the CNI plugin binary. Decodes the environment and stdin, runs one command, prints
// the result or a spec error on stdout, and exits non-zero on error. Nothing here may throw
// past main: a runtime must always get a well-formed answer.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "cni/plugin.h"
#include "cni/spec.h"
#include "common/log.h"

namespace {

using namespace sluice;
using namespace sluice::cni;

constexpr size_t kMaxStdin = 16 << 20;
// spdlog's built-in default logger writes to stdout, which belongs to the CNI result.
bool loggingReady = false;

std::string readStdin() {
  std::string in;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (in.size() > kMaxStdin) break;
  }
  return in;
}

// The version to answer errors in: the config's if it is one we speak.
std::string versionHint(const std::string& in) {
  auto parsed = parseJson(in, "stdin");
  if (!parsed.ok()) return kLatestVersion;
  const json& j = *parsed;
  if (j.is_object() && j.contains("cniVersion") && j["cniVersion"].is_string()) {
    std::string v = j["cniVersion"].get<std::string>();
    for (const auto& s : supportedVersions()) {
      if (s == v) return v;
    }
  }
  return kLatestVersion;
}

int fail(const std::string& version, const Error& e) {
  // The one place an error becomes a spec code; an errno that slipped through is 100, never
  // its own number.
  int code = specCode(e);
  std::string out = encodeError(version, code, e.message).dump();
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (loggingReady) spdlog::error("code={} {}", code, e.message);
  return 1;
}

// SLUICE_TEST_FAIL_AT=<step> makes that ADD step fail: the privileged tests check that every
// step's failure rolls back completely. Only read here, so no business logic knows about it.
Hooks hooksFromEnv() {
  Hooks h;
  const char* at = std::getenv("SLUICE_TEST_FAIL_AT");
  if (at && *at) {
    std::string step = at;
    h.step = [step](std::string_view s) -> Status {
      if (s == step) return makeError("injected failure at step " + step, kErrInternal);
      return Status::Ok();
    };
  }
  return h;
}

int run() {
  std::string in = readStdin();
  std::string version = versionHint(in);
  auto env = parseEnv([](const char* k) { return std::getenv(k); });
  if (!env.ok()) return fail(version, env.error());
  auto conf = parseNetConf(in, env->command);
  if (env->command == Command::Version) {
    std::string requested = conf.ok() ? conf->cniVersion : std::string(kLatestVersion);
    std::cout << cmdVersion(requested).dump() << std::endl;
    return 0;
  }
  if (!conf.ok()) return fail(version, conf.error());
  version = conf->cniVersion;
  if (conf->logFile.empty()) {
    // Runtimes keep a plugin's stderr; keep it to problems.
    initLogging("sluice", "-", conf->logLevel == "info" ? "warn" : conf->logLevel);
  } else {
    initLogging("sluice", conf->logFile, conf->logLevel);
  }
  loggingReady = true;
  if ((env->command == Command::Status || env->command == Command::Gc) &&
      !versionAtLeast(conf->cniVersion, "1.1.0")) {
    return fail(version,
                makeError("cniVersion " + conf->cniVersion + " does not support " +
                              (env->command == Command::Gc ? "GC" : "STATUS") + " (needs 1.1.0)",
                          kErrIncompatibleVersion));
  }
  switch (env->command) {
    case Command::Add: {
      auto r = cmdAdd(*env, *conf, hooksFromEnv());
      if (!r.ok()) return fail(version, r.error());
      std::cout << r->dump() << std::endl;
      return 0;
    }
    case Command::Del: {
      auto st = cmdDel(*env, *conf);
      return st.ok() ? 0 : fail(version, st.error());
    }
    case Command::Check: {
      auto st = cmdCheck(*env, *conf);
      return st.ok() ? 0 : fail(version, st.error());
    }
    case Command::Gc: {
      auto st = cmdGc(*env, *conf);
      return st.ok() ? 0 : fail(version, st.error());
    }
    case Command::Status: {
      auto st = cmdStatus(*env, *conf);
      return st.ok() ? 0 : fail(version, st.error());
    }
    case Command::Version:
      break;
  }
  return 0;
}

}  // namespace

int main() {
  // A delegated IPAM plugin that exits without reading its stdin, or a runtime that closed our
  // stdout, must not kill us silently: write() then fails with EPIPE and is reported.
  // (Children get the default disposition back: cni/exec.cc.)
  ::signal(SIGPIPE, SIG_IGN);
  try {
    return run();
  } catch (const std::exception& e) {
    return fail(kLatestVersion,
                makeError(std::string("internal error: ") + e.what(), kErrInternal));
  } catch (...) {
    return fail(kLatestVersion, makeError("internal error", kErrInternal));
  }
}
