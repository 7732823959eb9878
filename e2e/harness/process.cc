#include "e2e/harness/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "common/unique_fd.h"

extern char** environ;

namespace sluice::e2e {

namespace {

using Clock = std::chrono::steady_clock;

// argv/envp are built before fork: the harness forks from several threads at once, and only
// async-signal-safe calls are allowed between fork and exec.
struct ExecArgs {
  std::vector<std::string> argStrs;
  std::vector<std::string> envStrs;
  std::vector<char*> argv;
  std::vector<char*> envp;
  void finish() {
    for (auto& a : argStrs) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : envStrs) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
};

[[noreturn]] void execChild(ExecArgs& args, int nsFd, int in, int out, int err) {
  if (nsFd >= 0 && setns(nsFd, CLONE_NEWNET) != 0) _exit(126);
  if (in >= 0) dup2(in, 0);
  if (out >= 0) dup2(out, 1);
  if (err >= 0) dup2(err, 2);
  // New process group so a timeout kills helpers the command started too.
  setpgid(0, 0);
  execvpe(args.argv[0], args.argv.data(), args.envp.data());
  _exit(127);
}

std::vector<std::string> buildEnv(const Command& cmd) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string s(*e);
    auto eq = s.find('=');
    if (eq != std::string::npos) env[s.substr(0, eq)] = s.substr(eq + 1);
  }
  for (const auto& [k, v] : cmd.env) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

ExecArgs buildArgs(const Command& cmd) {
  ExecArgs a;
  a.argStrs = cmd.argv;
  a.envStrs = buildEnv(cmd);
  return a;
}

Result<UniqueFd> openNs(const Command& cmd) {
  if (cmd.netns.empty()) return UniqueFd();
  UniqueFd fd(open(cmd.netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return makeError("open netns " + cmd.netns + ": " + std::strerror(errno));
  return fd;
}

std::string describe(const Command& cmd) {
  std::string s;
  for (const auto& a : cmd.argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

}  // namespace

Result<RunResult> run(const Command& cmd, std::chrono::milliseconds timeout) {
  if (cmd.argv.empty()) return makeError("run: empty command");
  SLUICE_ASSIGN_OR_RETURN(UniqueFd ns, openNs(cmd));
  int inPipe[2], outPipe[2], errPipe[2];
  if (pipe2(inPipe, O_CLOEXEC) || pipe2(outPipe, O_CLOEXEC) || pipe2(errPipe, O_CLOEXEC)) {
    return makeError(std::string("pipe: ") + std::strerror(errno));
  }
  UniqueFd inR(inPipe[0]), inW(inPipe[1]), outR(outPipe[0]), outW(outPipe[1]), errR(errPipe[0]),
      errW(errPipe[1]);
  ExecArgs args = buildArgs(cmd);
  args.finish();  // pointers into the strings, taken where they will stay
  pid_t pid = fork();
  if (pid < 0) return makeError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) execChild(args, ns.get(), inR.get(), outW.get(), errW.get());
  inR.reset();
  outW.reset();
  errW.reset();
  fcntl(inW.get(), F_SETFL, O_NONBLOCK);
  size_t written = 0;
  if (cmd.stdinData.empty()) inW.reset();
  RunResult res;
  auto deadline = Clock::now() + timeout;
  bool timedOut = false;
  while (outR || errR) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timedOut = true;
      break;
    }
    std::vector<pollfd> pfds;
    if (outR) pfds.push_back({outR.get(), POLLIN, 0});
    if (errR) pfds.push_back({errR.get(), POLLIN, 0});
    if (inW) pfds.push_back({inW.get(), POLLOUT, 0});
    if (poll(pfds.data(), pfds.size(), static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (const auto& p : pfds) {
      if (!p.revents) continue;
      if (inW && p.fd == inW.get()) {
        ssize_t n = write(inW.get(), cmd.stdinData.data() + written, cmd.stdinData.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (n < 0 || written == cmd.stdinData.size()) inW.reset();
        continue;
      }
      char buf[8192];
      ssize_t n = read(p.fd, buf, sizeof(buf));
      bool isOut = outR && p.fd == outR.get();
      if (n <= 0) {
        (isOut ? outR : errR).reset();
      } else {
        (isOut ? res.out : res.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  if (timedOut) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  res.exitCode = (!timedOut && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  if (timedOut) res.err += "\n[harness: killed after " + std::to_string(timeout.count()) + " ms]";
  return res;
}

Status runChecked(const Command& cmd, std::chrono::milliseconds timeout) {
  SLUICE_ASSIGN_OR_RETURN(RunResult r, run(cmd, timeout));
  if (r.exitCode != 0) {
    return makeError(describe(cmd) + " exited " + std::to_string(r.exitCode) + ": " + r.err + r.out);
  }
  return Status::Ok();
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    stop();
    pid_ = o.pid_;
    o.pid_ = -1;
  }
  return *this;
}

bool Child::running() {
  if (pid_ < 0) return false;
  int status;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int Child::stop(std::chrono::milliseconds grace) {
  if (pid_ < 0) return -1;
  ::kill(pid_, SIGTERM);
  auto deadline = Clock::now() + grace;
  int status = 0;
  while (Clock::now() < deadline) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill();
  return -1;
}

void Child::kill() {
  if (pid_ < 0) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int status;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

Result<Child> spawn(const Command& cmd) {
  if (cmd.argv.empty()) return makeError("spawn: empty command");
  SLUICE_ASSIGN_OR_RETURN(UniqueFd ns, openNs(cmd));
  std::string outPath = cmd.outputFile.empty() ? "/dev/null" : cmd.outputFile;
  UniqueFd out(open(outPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!out) return makeError("open " + outPath + ": " + std::strerror(errno));
  UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ExecArgs args = buildArgs(cmd);
  args.finish();  // pointers into the strings, taken where they will stay
  pid_t pid = fork();
  if (pid < 0) return makeError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) execChild(args, ns.get(), devnull.get(), out.get(), out.get());
  return Child(pid);
}

}  // namespace sluice::e2e
