#include "subprocess.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace sluice::ctl::testing {

namespace {

// A temporary file that captures one stream; removed on destruction.
class CaptureFile {
 public:
  CaptureFile() {
    char tmpl[] = "/tmp/sluicectl-test.XXXXXX";
    fd_ = ::mkstemp(tmpl);
    if (fd_ < 0) throw std::runtime_error("mkstemp failed");
    path_ = tmpl;
  }
  ~CaptureFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  std::string read() const {
    std::string s;
    char buf[65536];
    ::lseek(fd_, 0, SEEK_SET);
    ssize_t n;
    while ((n = ::read(fd_, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
    return s;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace

ProcessResult runProcess(const std::string& program, const std::vector<std::string>& args) {
  CaptureFile out, err;
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(out.fd(), STDOUT_FILENO);
    ::dup2(err.fd(), STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::execv(program.c_str(), argv.data());
    std::perror("execv");
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  ProcessResult r;
  if (WIFEXITED(status)) r.exitCode = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = out.read();
  r.err = err.read();
  return r;
}

ProcessResult runCtl(const std::vector<std::string>& args) {
  return runProcess(SLUICECTL_PATH, args);
}

std::string fixture(const std::string& rel) {
  return std::string(SLUICE_SOURCE_DIR) + "/tests/ctl/fixtures/" + rel;
}

}  // namespace sluice::ctl::testing
