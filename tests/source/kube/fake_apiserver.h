// A small in-process Kubernetes API server for the kube source's tests: HTTP/1.1 on 127.0.0.1,
// one request per connection, lists with pagination (limit/continue) and chunked watch streams
// served from a scripted store with a global resourceVersion counter. It does on demand what a
// real server will not: garbage and truncated lines, stalled streams, disconnects after N
// events, 410 Gone (as an HTTP status or an ERROR event), 403, outages, and token checks
// against a token file that the test rotates.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace sluice::testing {

class FakeApiServer {
 public:
  enum class Fault {
    MalformedLine,  // a line that is not JSON, then the stream goes on
    TruncatedLine,  // half of the next event's line, then a clean end of the stream
    Stall,          // nothing more is sent; the connection stays open
    Disconnect,     // the connection is closed mid-stream
    GoneEvent,      // an ERROR event with code 410
    GoneStatus,     // the watch is answered with HTTP 410
  };

  struct TlsFiles {
    std::string certFile;  // PEM chain; empty: plain HTTP
    std::string keyFile;
  };
  // `tokenFile` non-empty: every request must carry "Bearer <its current content>".
  explicit FakeApiServer(std::string tokenFile = "", TlsFiles tls = {});
  ~FakeApiServer();

  std::string url() const;

  // The store. `collection` is the API path ("/api/v1/pods"). Objects get
  // metadata.resourceVersion; each change is an event watches see.
  void upsert(const std::string& collection, nlohmann::json object);
  void remove(const std::string& collection, const std::string& key);
  void bookmark(const std::string& collection);
  // Forget history: a watch from an older resourceVersion gets 410.
  void compact();
  uint64_t resourceVersion() const;

  // The next watch of `collection` meets `fault` after `afterEvents` events.
  void injectWatchFault(const std::string& collection, Fault fault, int afterEvents = 0);
  // While held, watches of `collection` send nothing new (events pile up server-side).
  void holdWatches(const std::string& collection, bool hold);
  // Ends every open watch stream (a clean end, as at timeoutSeconds).
  void closeWatches();
  void setForbidden(const std::string& collection, bool forbidden);
  // Every request answered 503.
  void setUnavailable(bool unavailable);

  // Observations.
  int listRequests(const std::string& collection) const;
  std::vector<std::string> watchVersions(const std::string& collection) const;
  int unauthorized() const;
  int openWatches() const;
  int tlsFailures() const { return tlsFailures_.load(); }

 private:
  struct Event {
    uint64_t rv;
    std::string collection;
    std::string type;
    nlohmann::json object;
  };
  struct Request {
    std::string path;
    std::map<std::string, std::string> query;
    std::string authorization;
  };
  struct PendingFault {
    Fault fault;
    int afterEvents;
  };

  void acceptLoop(std::stop_token stop);
  void serve(int fd, std::stop_token stop);
  void serveList(int fd, const Request& r);
  void serveWatch(int fd, const Request& r, std::stop_token stop);
  static std::string keyOf(const nlohmann::json& object);

  std::string tokenFile_;
  int listenFd_ = -1;
  int port_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t rv_ = 100;
  uint64_t compactedRv_ = 0;
  std::map<std::string, std::map<std::string, nlohmann::json>> objects_;
  std::vector<Event> events_;
  std::map<std::string, std::vector<PendingFault>> faults_;
  std::map<std::string, bool> held_;
  std::map<std::string, bool> forbidden_;
  bool unavailable_ = false;
  uint64_t closeGeneration_ = 0;
  std::map<std::string, int> lists_;
  std::map<std::string, std::vector<std::string>> watchVersions_;
  int unauthorized_ = 0;
  int openWatches_ = 0;
  std::atomic<bool> stopping_{false};
  void* sslCtx_ = nullptr;  // SSL_CTX*, kept out of the header
  std::atomic<int> tlsFailures_{0};

  std::mutex connMu_;
  std::vector<std::jthread> connections_;
  std::jthread acceptThread_;
};

// Builders for the objects the tests serve.
nlohmann::json podJson(const std::string& ns, const std::string& name,
                       const std::map<std::string, std::string>& labels, const std::string& ip,
                       const std::string& node = "node-a");
nlohmann::json namespaceJson(const std::string& name,
                             const std::map<std::string, std::string>& labels = {});
nlohmann::json policyJson(const std::string& ns, const std::string& name, nlohmann::json spec);
nlohmann::json nodeJson(const std::string& name, const std::string& internalIp,
                        const std::vector<std::string>& podCidrs);

inline constexpr const char* kPods = "/api/v1/pods";
inline constexpr const char* kNamespaces = "/api/v1/namespaces";
inline constexpr const char* kPolicies = "/apis/networking.k8s.io/v1/networkpolicies";
inline constexpr const char* kNodes = "/api/v1/nodes";

}  // namespace sluice::testing
