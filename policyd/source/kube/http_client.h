// GET requests to the API server through libcurl: TLS verified against the cluster CA, bearer
// token (its file reread on every request, so a rotated service-account token is picked up) or
// client certificate. One easy handle per client: an informer owns one for its list+watch
// stream. The body is handed over as it arrives, so a watch is decoded incrementally.
// libcurl runs with CURLOPT_NOSIGNAL (it is used from several threads), so the process must
// ignore SIGPIPE, as sluice-policyd and sluicectl do: a TLS write to a closed peer raises it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>

#include "common/result.h"
#include "policyd/source/kube/config.h"

namespace sluice::source::kube {

// Error codes of HttpClient::get beyond HTTP statuses.
inline constexpr int kErrStopped = -1;  // the stop token fired
inline constexpr int kErrStalled = -2;  // no byte for `idleTimeout`
inline constexpr int kErrTransport = -3;

struct HttpOutcome {
  long status = 0;
  // The body of a non-2xx response (capped), for error messages.
  std::string errorBody;
  // The transfer was ended by onData returning false.
  bool endedByCaller = false;
};

class HttpClient {
 public:
  static Result<std::unique_ptr<HttpClient>> create(const ClusterConfig& config);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // GET `target` ("/api/v1/pods?limit=500"). `onData` receives the body of a 2xx response in
  // pieces; returning false ends the transfer. Fails (Error::code above) on transport errors,
  // on `stop`, and when no byte arrives for `idleTimeout`.
  Result<HttpOutcome> get(const std::string& target,
                          const std::function<bool(std::string_view)>& onData,
                          std::chrono::milliseconds idleTimeout, std::stop_token stop);

  const ClusterConfig& config() const { return config_; }

 private:
  explicit HttpClient(ClusterConfig config);
  struct Impl;
  ClusterConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::source::kube
