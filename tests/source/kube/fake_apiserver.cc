#include "tests/source/kube/fake_apiserver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace sluice::testing {

namespace {

using Json = nlohmann::json;

// Every wait in the server is bounded, so a test that goes wrong ends instead of hanging.
constexpr auto kMaxWatch = std::chrono::seconds(30);

// Each connection is served on its own thread; with TLS, its SSL object.
thread_local SSL* tlsConn = nullptr;

ssize_t sendSome(int fd, std::string_view data) {
  if (tlsConn) return SSL_write(tlsConn, data.data(), static_cast<int>(data.size()));
  return ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
}

ssize_t recvSome(int fd, char* buf, size_t len) {
  if (tlsConn) return SSL_read(tlsConn, buf, static_cast<int>(len));
  return ::recv(fd, buf, len, 0);
}

bool sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = sendSome(fd, data);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool sendChunk(int fd, std::string_view data) {
  std::ostringstream h;
  h << std::hex << data.size() << "\r\n";
  return sendAll(fd, h.str()) && sendAll(fd, data) && sendAll(fd, "\r\n");
}

std::string statusBody(int code, const std::string& reason, const std::string& message) {
  return Json{{"kind", "Status"},   {"apiVersion", "v1"}, {"status", "Failure"},
              {"message", message}, {"reason", reason},   {"code", code}}
      .dump();
}

void respond(int fd, int code, const std::string& text, const std::string& body) {
  std::string head =
      "HTTP/1.1 " + std::to_string(code) + " " + text +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n";
  sendAll(fd, head + body);
}

std::string decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string readToken(const std::string& path) {
  std::ifstream in(path);
  std::string t((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

// The client went away (or sent something): the stream is over.
bool peerClosed(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0;
}

}  // namespace

FakeApiServer::FakeApiServer(std::string tokenFile, TlsFiles tls)
    : tokenFile_(std::move(tokenFile)) {
  // SSL_write to a client that went away raises SIGPIPE (the daemon ignores it the same way).
  ::signal(SIGPIPE, SIG_IGN);
  if (!tls.certFile.empty()) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, tls.certFile.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, tls.keyFile.c_str(), SSL_FILETYPE_PEM) != 1)
      throw std::runtime_error("fake apiserver: cannot load " + tls.certFile + " / " + tls.keyFile);
    sslCtx_ = ctx;
  }
  listenFd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listenFd_ < 0 || ::bind(listenFd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listenFd_, 64) != 0)
    throw std::runtime_error(std::string("fake apiserver: ") + std::strerror(errno));
  socklen_t len = sizeof a;
  ::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptThread_ = std::jthread([this](std::stop_token st) { acceptLoop(st); });
}

FakeApiServer::~FakeApiServer() {
  stopping_ = true;
  acceptThread_.request_stop();
  ::shutdown(listenFd_, SHUT_RDWR);
  acceptThread_.join();
  ::close(listenFd_);
  cv_.notify_all();
  std::lock_guard lock(connMu_);
  for (auto& t : connections_) t.request_stop();
  cv_.notify_all();
  connections_.clear();  // joins
  if (sslCtx_) SSL_CTX_free(static_cast<SSL_CTX*>(sslCtx_));
}

std::string FakeApiServer::url() const {
  return std::string(sslCtx_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

std::string FakeApiServer::keyOf(const Json& o) {
  const Json& md = o.at("metadata");
  std::string name = md.at("name");
  auto ns = md.find("namespace");
  return ns != md.end() ? ns->get<std::string>() + "/" + name : name;
}

void FakeApiServer::upsert(const std::string& collection, Json object) {
  std::lock_guard lock(mu_);
  uint64_t rv = ++rv_;
  object["metadata"]["resourceVersion"] = std::to_string(rv);
  std::string key = keyOf(object);
  auto& objs = objects_[collection];
  std::string type = objs.contains(key) ? "MODIFIED" : "ADDED";
  objs[key] = object;
  events_.push_back({rv, collection, type, std::move(object)});
  cv_.notify_all();
}

void FakeApiServer::remove(const std::string& collection, const std::string& key) {
  std::lock_guard lock(mu_);
  auto& objs = objects_[collection];
  auto it = objs.find(key);
  if (it == objs.end()) return;
  uint64_t rv = ++rv_;
  Json object = it->second;
  object["metadata"]["resourceVersion"] = std::to_string(rv);
  objs.erase(it);
  events_.push_back({rv, collection, "DELETED", std::move(object)});
  cv_.notify_all();
}

void FakeApiServer::bookmark(const std::string& collection) {
  std::lock_guard lock(mu_);
  uint64_t rv = ++rv_;
  Json o = {{"kind", "Bookmark"}, {"metadata", {{"resourceVersion", std::to_string(rv)}}}};
  events_.push_back({rv, collection, "BOOKMARK", std::move(o)});
  cv_.notify_all();
}

void FakeApiServer::compact() {
  std::lock_guard lock(mu_);
  compactedRv_ = rv_;
  events_.clear();
}

uint64_t FakeApiServer::resourceVersion() const {
  std::lock_guard lock(mu_);
  return rv_;
}

void FakeApiServer::injectWatchFault(const std::string& collection, Fault fault, int afterEvents) {
  std::lock_guard lock(mu_);
  faults_[collection].push_back({fault, afterEvents});
}

void FakeApiServer::holdWatches(const std::string& collection, bool hold) {
  std::lock_guard lock(mu_);
  held_[collection] = hold;
  cv_.notify_all();
}

void FakeApiServer::closeWatches() {
  std::lock_guard lock(mu_);
  ++closeGeneration_;
  cv_.notify_all();
}

void FakeApiServer::setForbidden(const std::string& collection, bool forbidden) {
  std::lock_guard lock(mu_);
  forbidden_[collection] = forbidden;
}

void FakeApiServer::setUnavailable(bool unavailable) {
  std::lock_guard lock(mu_);
  unavailable_ = unavailable;
  ++closeGeneration_;
  cv_.notify_all();
}

int FakeApiServer::listRequests(const std::string& collection) const {
  std::lock_guard lock(mu_);
  auto it = lists_.find(collection);
  return it == lists_.end() ? 0 : it->second;
}

std::vector<std::string> FakeApiServer::watchVersions(const std::string& collection) const {
  std::lock_guard lock(mu_);
  auto it = watchVersions_.find(collection);
  return it == watchVersions_.end() ? std::vector<std::string>{} : it->second;
}

int FakeApiServer::unauthorized() const {
  std::lock_guard lock(mu_);
  return unauthorized_;
}

int FakeApiServer::openWatches() const {
  std::lock_guard lock(mu_);
  return openWatches_;
}

void FakeApiServer::acceptLoop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    std::lock_guard lock(connMu_);
    connections_.emplace_back([this, fd](std::stop_token st) {
      SSL* ssl = nullptr;
      if (sslCtx_) {
        ssl = SSL_new(static_cast<SSL_CTX*>(sslCtx_));
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {  // e.g. the client did not trust our certificate
          ++tlsFailures_;
          SSL_free(ssl);
          ::close(fd);
          return;
        }
        tlsConn = ssl;
      }
      serve(fd, st);
      if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
        tlsConn = nullptr;
      }
      ::close(fd);
    });
  }
}

void FakeApiServer::serve(int fd, std::stop_token stop) {
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return;
    ssize_t n = recvSome(fd, buf, sizeof buf);
    if (n <= 0) return;
    head.append(buf, static_cast<size_t>(n));
    if (head.size() > 65536) return;
  }
  Request r;
  std::istringstream in(head);
  std::string method, target, version, line;
  in >> method >> target >> version;
  std::getline(in, line);
  while (std::getline(in, line) && line != "\r") {
    if (line.rfind("Authorization: ", 0) == 0) {
      r.authorization = line.substr(15);
      if (!r.authorization.empty() && r.authorization.back() == '\r') r.authorization.pop_back();
    }
  }
  auto q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) {
    std::istringstream qs(target.substr(q + 1));
    std::string kv;
    while (std::getline(qs, kv, '&')) {
      auto eq = kv.find('=');
      r.query[kv.substr(0, eq)] = eq == std::string::npos ? "" : decode(kv.substr(eq + 1));
    }
  }
  {
    std::unique_lock lock(mu_);
    if (unavailable_) {
      lock.unlock();
      respond(fd, 503, "Service Unavailable", statusBody(503, "ServiceUnavailable", "down"));
      return;
    }
    if (!tokenFile_.empty() && r.authorization != "Bearer " + readToken(tokenFile_)) {
      ++unauthorized_;
      lock.unlock();
      respond(fd, 401, "Unauthorized", statusBody(401, "Unauthorized", "Unauthorized"));
      return;
    }
    if (forbidden_[r.path]) {
      lock.unlock();
      bool watch = r.query.contains("watch");
      respond(fd, 403, "Forbidden",
              statusBody(403, "Forbidden",
                         "User \"system:serviceaccount:kube-system:sluice\" cannot " +
                             std::string(watch ? "watch" : "list") + " resource at " + r.path));
      return;
    }
  }
  if (method != "GET") {
    respond(fd, 405, "Method Not Allowed", statusBody(405, "MethodNotAllowed", method));
  } else if (r.query.contains("watch")) {
    serveWatch(fd, r, stop);
  } else {
    serveList(fd, r);
  }
}

void FakeApiServer::serveList(int fd, const Request& r) {
  std::unique_lock lock(mu_);
  ++lists_[r.path];
  size_t limit = r.query.contains("limit") ? std::stoul(r.query.at("limit")) : 0;
  std::string after;  // the key the previous page ended with
  std::string listRv = std::to_string(rv_);
  if (auto c = r.query.find("continue"); c != r.query.end() && !c->second.empty()) {
    // Token: "<resourceVersion of the first page>:<last key served>".
    auto colon = c->second.find(':');
    listRv = c->second.substr(0, colon);
    after = c->second.substr(colon + 1);
    if (std::stoull(listRv) < compactedRv_) {
      lock.unlock();
      respond(fd, 410, "Gone", statusBody(410, "Expired", "continue token expired"));
      return;
    }
  }
  const auto& objs = objects_[r.path];
  Json items = Json::array();
  auto it = after.empty() ? objs.begin() : objs.upper_bound(after);
  std::string last;
  for (; it != objs.end(); ++it) {
    if (limit && items.size() >= limit) break;
    Json item = it->second;
    item.erase("kind");  // list items carry no kind or apiVersion of their own
    item.erase("apiVersion");
    items.push_back(std::move(item));
    last = it->first;
  }
  Json md = {{"resourceVersion", listRv}};
  if (it != objs.end()) md["continue"] = listRv + ":" + last;
  lock.unlock();
  respond(
      fd, 200, "OK",
      Json{{"kind", "List"}, {"apiVersion", "v1"}, {"metadata", md}, {"items", std::move(items)}}
          .dump());
}

void FakeApiServer::serveWatch(int fd, const Request& r, std::stop_token stop) {
  std::unique_lock lock(mu_);
  std::string fromText = r.query.contains("resourceVersion") ? r.query.at("resourceVersion") : "0";
  watchVersions_[r.path].push_back(fromText);
  // Taken with the request's record: a closeWatches() after watchVersions() shows this watch
  // always ends it.
  uint64_t closeGen = closeGeneration_;
  uint64_t from = fromText.empty() ? 0 : std::stoull(fromText);
  PendingFault fault{Fault::GoneStatus, 0};
  bool hasFault = false;
  if (auto& f = faults_[r.path]; !f.empty()) {
    fault = f.front();
    hasFault = true;
    f.erase(f.begin());
  }
  if (hasFault && fault.fault == Fault::GoneStatus) {
    lock.unlock();
    respond(fd, 410, "Gone", statusBody(410, "Expired", "too old resource version"));
    return;
  }
  bool gone = from < compactedRv_;
  ++openWatches_;
  // Counts the watch out on every return, whether or not `lock` is held then.
  struct Closer {
    FakeApiServer* s;
    std::unique_lock<std::mutex>& lock;
    ~Closer() {
      if (!lock.owns_lock()) lock.lock();
      --s->openWatches_;
      lock.unlock();
    }
  };
  Closer closer{this, lock};
  lock.unlock();
  if (!sendAll(fd,
               "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"))
    return;
  auto finish = [&] { sendAll(fd, "0\r\n\r\n"); };
  if (gone) {
    Json e = {{"type", "ERROR"},
              {"object", Json::parse(statusBody(410, "Expired",
                                                "too old resource version: " + fromText + " (" +
                                                    std::to_string(compactedRv_) + ")"))}};
    sendChunk(fd, e.dump() + "\n");
    finish();
    return;
  }
  int timeoutSeconds =
      r.query.contains("timeoutSeconds") ? std::stoi(r.query.at("timeoutSeconds")) : 30;
  auto deadline = std::chrono::steady_clock::now() +
                  std::min<std::chrono::seconds>(std::chrono::seconds(timeoutSeconds), kMaxWatch);
  int sent = 0;
  lock.lock();
  uint64_t next = from;  // events with rv > next are due
  for (;;) {
    if (stop.stop_requested() || stopping_ || closeGeneration_ != closeGen) break;
    if (std::chrono::steady_clock::now() >= deadline) break;
    if (hasFault && sent >= fault.afterEvents) {
      Fault f = fault.fault;
      hasFault = false;
      switch (f) {
        case Fault::MalformedLine:
          lock.unlock();
          sendChunk(fd, "{\"type\":\"ADDED\",\"object\":this is not json}\n");
          lock.lock();
          continue;
        case Fault::TruncatedLine: {
          // The next due event, cut in half; the stream then ends cleanly.
          std::string line;
          for (const auto& e : events_)
            if (e.collection == r.path && e.rv > next) {
              line = Json{{"type", e.type}, {"object", e.object}}.dump();
              break;
            }
          if (line.empty()) line = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"";
          lock.unlock();
          sendChunk(fd, line.substr(0, line.size() / 2));
          finish();
          return;
        }
        case Fault::Stall: {
          // Hold the connection silently until the client gives up (or a bound passes).
          lock.unlock();
          for (int i = 0; i < 3000 && !peerClosed(fd) && !stop.stop_requested() && !stopping_; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          return;
        }
        case Fault::Disconnect:
          lock.unlock();
          ::shutdown(fd, SHUT_RDWR);
          return;
        case Fault::GoneEvent: {
          lock.unlock();
          Json e = {
              {"type", "ERROR"},
              {"object", Json::parse(statusBody(410, "Expired", "too old resource version"))}};
          sendChunk(fd, e.dump() + "\n");
          finish();
          return;
        }
        case Fault::GoneStatus:
          break;
      }
    }
    const Event* due = nullptr;
    if (!held_[r.path]) {
      for (const auto& e : events_)
        if (e.collection == r.path && e.rv > next) {
          due = &e;
          break;
        }
    }
    if (!due) {
      cv_.wait_for(lock, std::chrono::milliseconds(20));
      if (peerClosed(fd)) break;
      continue;
    }
    std::string line = Json{{"type", due->type}, {"object", due->object}}.dump() + "\n";
    next = due->rv;
    lock.unlock();
    bool ok = sendChunk(fd, line);
    lock.lock();
    if (!ok) return;
    ++sent;
  }
  lock.unlock();
  finish();
}

Json podJson(const std::string& ns, const std::string& name,
             const std::map<std::string, std::string>& labels, const std::string& ip,
             const std::string& node) {
  Json pod = {{"kind", "Pod"},
              {"apiVersion", "v1"},
              {"metadata",
               {{"name", name},
                {"namespace", ns},
                {"labels", labels},
                {"uid", "uid-" + name},
                {"annotations", {{"note", "ignored by the engine"}}}}},
              {"spec",
               {{"nodeName", node},
                {"containers",
                 {{{"name", "app"},
                   {"image", "registry.example/app:1"},
                   {"ports", {{{"containerPort", 8080}, {"name", "http"}}}}}}}}},
              {"status", {{"phase", "Running"}}}};
  if (!ip.empty()) {
    pod["status"]["podIP"] = ip;
    pod["status"]["podIPs"] = {{{"ip", ip}}};
  }
  return pod;
}

Json namespaceJson(const std::string& name, const std::map<std::string, std::string>& labels) {
  return {{"kind", "Namespace"},
          {"apiVersion", "v1"},
          {"metadata", {{"name", name}, {"labels", labels}}}};
}

Json policyJson(const std::string& ns, const std::string& name, Json spec) {
  return {{"kind", "NetworkPolicy"},
          {"apiVersion", "networking.k8s.io/v1"},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"spec", std::move(spec)}};
}

Json nodeJson(const std::string& name, const std::string& internalIp,
              const std::vector<std::string>& podCidrs) {
  Json n = {{"kind", "Node"},
            {"apiVersion", "v1"},
            {"metadata", {{"name", name}}},
            {"spec", {{"podCIDRs", podCidrs}}},
            {"status",
             {{"addresses",
               {{{"type", "Hostname"}, {"address", name}},
                {{"type", "InternalIP"}, {"address", internalIp}}}}}}};
  if (!podCidrs.empty()) n["spec"]["podCIDR"] = podCidrs.front();
  return n;
}

}  // namespace sluice::testing
