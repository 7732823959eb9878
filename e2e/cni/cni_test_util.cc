#include "e2e/cni/cni_test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace sluice::cni::testing {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void childExec(const std::string& binary, const std::map<std::string, std::string>& env,
                            const std::string& netnsPath, int inFd, int outFd, int errFd) {
  if (!netnsPath.empty()) {
    int ns = ::open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) _exit(127);
  }
  ::dup2(inFd, 0);
  ::dup2(outFd, 1);
  ::dup2(errFd, 2);
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    // The runner's own CNI_* must not leak into a test's deliberately partial environment.
    if (kv.rfind("CNI_", 0) == 0) continue;
    envs.push_back(kv);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envs) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg0 = binary;
  char* argv[] = {arg0.data(), nullptr};
  ::execve(binary.c_str(), argv, envp.data());
  _exit(127);
}

// stdin through a temp file: the plugin may exit before reading it all (bad env), and a
// file can never block the parent.
int stdinFile(const std::string& data) {
  char tmpl[] = "/tmp/slt-stdin-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) return -1;
  ::unlink(tmpl);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

}  // namespace

PendingPlugin startPlugin(const std::string& binary, const std::map<std::string, std::string>& env,
                          const std::string& stdinData, const std::string& netnsPath) {
  int in = stdinFile(stdinData);
  int err = stdinFile("");
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) childExec(binary, env, netnsPath, in, out[1], err);
  ::close(in);
  ::close(out[1]);
  return PendingPlugin{pid, out[0], err};
}

PluginOutput waitPlugin(PendingPlugin p, std::chrono::milliseconds timeout) {
  PluginOutput r;
  if (p.pid <= 0) return r;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      ::kill(p.pid, SIGKILL);
      break;
    }
    pollfd pfd{p.outFd, POLLIN, 0};
    int pr = ::poll(&pfd, 1, static_cast<int>(left));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    ssize_t n = ::read(p.outFd, buf, sizeof(buf));
    if (n <= 0) break;
    r.out.append(buf, static_cast<size_t>(n));
  }
  ::close(p.outFd);
  int status = 0;
  ::waitpid(p.pid, &status, 0);
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  ::lseek(p.errFd, 0, SEEK_SET);
  for (;;) {
    ssize_t n = ::read(p.errFd, buf, sizeof(buf));
    if (n <= 0) break;
    r.err.append(buf, static_cast<size_t>(n));
  }
  ::close(p.errFd);
  r.parsed = json::parse(r.out, nullptr, false);
  if (r.parsed.is_discarded()) r.parsed = json();  // null: value() lookups fail cleanly
  return r;
}

PluginOutput runPlugin(const std::string& binary, const std::map<std::string, std::string>& env,
                       const std::string& stdinData, const std::string& netnsPath,
                       std::chrono::milliseconds timeout) {
  return waitPlugin(startPlugin(binary, env, stdinData, netnsPath), timeout);
}

int runCmd(const std::vector<std::string>& argv, std::string* out) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, 0);
    ::dup2(pipefd[1], 1);
    ::dup2(out ? pipefd[1] : devnull, 2);
    std::vector<std::string> a = argv;
    std::vector<char*> args;
    for (auto& s : a) args.push_back(s.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  ::close(pipefd[1]);
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(pipefd[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (out) *out = data;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

NetnsSet::NetnsSet() : prefix_("slt" + std::to_string(::getpid())) {
  tmp_ = "/tmp/" + prefix_;
  fs::create_directories(tmp_);
}

NetnsSet::~NetnsSet() {
  for (const auto& n : names_) runCmd({"ip", "netns", "del", n});
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

void NetnsSet::preClean(const std::string& family) {
  std::string out;
  runCmd({"ip", "netns", "list"}, &out);
  auto stale = [&](const std::string& name) {
    // "<family><pid>-..." of a process that no longer exists.
    if (name.rfind(family, 0) != 0) return false;
    size_t end = name.find_first_not_of("0123456789", family.size());
    if (end == family.size()) return false;
    pid_t pid = static_cast<pid_t>(std::stol(name.substr(family.size(), end - family.size())));
    return ::kill(pid, 0) != 0 && errno == ESRCH;
  };
  size_t pos = 0;
  while (pos < out.size()) {
    size_t nl = out.find('\n', pos);
    std::string line = out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? out.size() : nl + 1;
    std::string name = line.substr(0, line.find(' '));
    if (!name.empty() && stale(name)) runCmd({"ip", "netns", "del", name});
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/tmp", ec)) {
    std::string name = e.path().filename().string();
    if (stale(name)) fs::remove_all(e.path(), ec);
  }
}

std::string NetnsSet::add(const std::string& name) {
  std::string full = fullName(name);
  runCmd({"ip", "netns", "del", full});
  runCmd({"ip", "netns", "add", full});
  runCmd({"ip", "-n", full, "link", "set", "lo", "up"});
  names_.push_back(full);
  return path(name);
}

void NetnsSet::remove(const std::string& name) {
  std::string full = fullName(name);
  runCmd({"ip", "netns", "del", full});
  std::erase(names_, full);
}

int inNetns(const std::string& netnsPath, const std::function<int()>& fn, int timeoutMs) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int ns = ::open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) _exit(126);
    ::alarm(static_cast<unsigned>((timeoutMs + 999) / 1000));  // bounded even if fn hangs
    _exit(fn());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

FakePolicyd::FakePolicyd(std::string path) : path_(std::move(path)) {
  ::unlink(path_.c_str());
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::listen(fd_, 128);
  thread_ = std::thread([this] { serve(); });
}

FakePolicyd::~FakePolicyd() {
  stop_ = true;
  thread_.join();
  ::close(fd_);
  ::unlink(path_.c_str());
}

void FakePolicyd::setReply(const std::string& line) {
  std::lock_guard<std::mutex> l(mu_);
  reply_ = line;
}

std::vector<json> FakePolicyd::requests() {
  std::lock_guard<std::mutex> l(mu_);
  return requests_;
}

void FakePolicyd::serve() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    std::string in;
    char buf[4096];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (in.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, 100) <= 0) continue;
      ssize_t n = ::read(c, buf, sizeof(buf));
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    if (in.find('\n') != std::string::npos) {
      std::string reply;
      {
        std::lock_guard<std::mutex> l(mu_);
        requests_.push_back(json::parse(in.substr(0, in.find('\n')), nullptr, false));
        reply = reply_ + "\n";
      }
      (void)!::write(c, reply.data(), reply.size());
    }
    ::close(c);
  }
}

}  // namespace sluice::cni::testing
