#include "cni/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "cni/spec.h"
#include "common/unique_fd.h"

extern char** environ;

namespace sluice::cni {

namespace {

Result<std::string> findPlugin(const std::string& cniPath, const std::string& type) {
  size_t pos = 0;
  while (pos <= cniPath.size()) {
    size_t colon = cniPath.find(':', pos);
    std::string dir =
        cniPath.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    pos = colon == std::string::npos ? cniPath.size() + 1 : colon + 1;
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + type;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return makeError("ipam.type: plugin \"" + type + "\" not found in CNI_PATH " + cniPath,
                   kErrInvalidConfig);
}

}  // namespace

Result<PluginRun> execPlugin(const std::string& cniPath, const std::string& type,
                             const std::map<std::string, std::string>& env,
                             const std::string& stdinData, int timeoutMs) {
  SLUICE_ASSIGN_OR_RETURN(std::string binary, findPlugin(cniPath, type));
  int inPipe[2], outPipe[2];
  if (::pipe2(inPipe, O_CLOEXEC) != 0)
    return makeError(std::string("pipe: ") + std::strerror(errno), kErrInternal);
  UniqueFd inR(inPipe[0]), inW(inPipe[1]);
  if (::pipe2(outPipe, O_CLOEXEC) != 0)
    return makeError(std::string("pipe: ") + std::strerror(errno), kErrInternal);
  UniqueFd outR(outPipe[0]), outW(outPipe[1]);

  std::map<std::string, std::string> merged;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) merged[k] = v;
  std::vector<std::string> envStrings;
  for (const auto& [k, v] : merged) envStrings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envStrings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg0 = binary;
  char* argv[] = {arg0.data(), nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, inR.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, outW.get(), 1);
  // We ignore SIGPIPE and an ignored signal stays ignored across exec; the plugin gets the
  // default back, as a runtime would start it.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t dflt;
  sigemptyset(&dflt);
  sigaddset(&dflt, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &dflt);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, binary.c_str(), &fa, &attr, argv, envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return makeError("exec " + binary + ": " + std::strerror(rc), kErrInternal);
  inR.reset();
  outW.reset();

  // Feed stdin and drain stdout together so neither side can block the other on a full pipe.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  size_t written = 0;
  std::string out;
  ::fcntl(inW.get(), F_SETFL, O_NONBLOCK);
  bool timedOut = false;
  bool refused = false;
  bool tooLong = false;
  while (outR) {
    if (written == stdinData.size() && inW) inW.reset();
    pollfd fds[2];
    int n = 0;
    fds[n++] = {outR.get(), POLLIN, 0};
    if (inW) fds[n++] = {inW.get(), POLLOUT, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      timedOut = true;
      break;
    }
    int pr = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(left));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) break;
    if (n == 2 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = ::write(inW.get(), stdinData.data() + written, stdinData.size() - written);
      if (w > 0) {
        written += static_cast<size_t>(w);
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        // EPIPE: the plugin closed stdin (or exited) without taking its configuration. That
        // is the plugin's failure, reported below; keep draining what it printed.
        refused = true;
        inW.reset();
        written = stdinData.size();
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[4096];
      ssize_t r = ::read(outR.get(), buf, sizeof(buf));
      if (r > 0) {
        out.append(buf, static_cast<size_t>(r));
        if (out.size() > kMaxPluginOutput) {
          tooLong = true;
          break;
        }
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        outR.reset();
      }
    }
  }
  // Stdout closed (it exited, as a rule) before taking all its configuration: the plugin
  // did not read it, whether or not a write got to see EPIPE.
  if (inW && written < stdinData.size()) refused = true;
  inW.reset();
  if (timedOut || tooLong) ::kill(pid, SIGKILL);
  // A plugin that closed stdout but lives on is still bound by the deadline.
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) break;
    if (w == 0 && std::chrono::steady_clock::now() >= deadline && !timedOut) {
      timedOut = true;
      ::kill(pid, SIGKILL);
    }
    if (w == 0) ::poll(nullptr, 0, 1);
  }
  if (timedOut) {
    return makeError(type + " did not finish within " + std::to_string(timeoutMs) + " ms",
                     kErrTryAgainLater);
  }
  if (tooLong) {
    return makeError(
        type + " printed more than " + std::to_string(kMaxPluginOutput) + " bytes; killed",
        kErrInternal);
  }
  PluginRun run;
  run.out = std::move(out);
  run.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.stdinRefused = refused;
  if (refused && run.exitCode == 0) {
    return makeError(type + " exited without reading its configuration from stdin (EPIPE)",
                     kErrInternal);
  }
  return run;
}

Error decodePluginError(const std::string& type, const PluginRun& run) {
  auto parsed = parseJson(run.out, type + " output");
  json j = parsed.ok() ? std::move(parsed).value() : json();
  if (j.is_object() && j.contains("msg")) {
    // The delegate speaks spec codes; ours carry categories (spec.h).
    int specCodeOf = j.contains("code") && j["code"].is_number_integer() ? j["code"].get<int>() : 0;
    int code = categoryOfSpecCode(specCodeOf);
    std::string msg = j["msg"].is_string() ? j["msg"].get<std::string>() : j["msg"].dump();
    if (code == kErrInternal && specCodeOf != 0)
      msg += " (its code " + std::to_string(specCodeOf) + ")";
    if (j.contains("details") && j["details"].is_string() &&
        !j["details"].get<std::string>().empty()) {
      msg += " (" + j["details"].get<std::string>() + ")";
    }
    return makeError(type + ": " + msg, code);
  }
  std::string why = run.stdinRefused ? " without reading its configuration" : "";
  return makeError(type + " exited with status " + std::to_string(run.exitCode) + why + ": " +
                       run.out.substr(0, 4096),
                   kErrInternal);
}

}  // namespace sluice::cni
