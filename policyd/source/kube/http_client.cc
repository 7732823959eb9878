#include "policyd/source/kube/http_client.h"

#include <curl/curl.h>

#include <mutex>

#include "common/file_util.h"

namespace sluice::source::kube {

namespace {

constexpr size_t kMaxErrorBody = 64 * 1024;

void globalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string trimToken(std::string t) {
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
  return t;
}

struct Transfer {
  const std::function<bool(std::string_view)>* onData = nullptr;
  CURL* easy = nullptr;
  HttpOutcome outcome;
  std::chrono::steady_clock::time_point lastData;
  bool statusKnown = false;
};

size_t onWrite(char* ptr, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  t->lastData = std::chrono::steady_clock::now();
  if (!t->statusKnown) {
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->outcome.status);
    t->statusKnown = true;
  }
  if (t->outcome.status < 200 || t->outcome.status >= 300) {
    size_t room = kMaxErrorBody - std::min(kMaxErrorBody, t->outcome.errorBody.size());
    t->outcome.errorBody.append(ptr, std::min(room, len));
    return len;
  }
  if (!(*t->onData)(std::string_view(ptr, len))) {
    t->outcome.endedByCaller = true;
    return CURL_WRITEFUNC_ERROR;
  }
  return len;
}

void setBlob(CURL* easy, CURLoption opt, const std::string& data) {
  curl_blob blob{const_cast<char*>(data.data()), data.size(), CURL_BLOB_COPY};
  curl_easy_setopt(easy, opt, &blob);
}

}  // namespace

struct HttpClient::Impl {
  CURL* easy = nullptr;
  CURLM* multi = nullptr;
  ~Impl() {
    if (easy) curl_easy_cleanup(easy);
    if (multi) curl_multi_cleanup(multi);
  }
};

HttpClient::HttpClient(ClusterConfig config)
    : config_(std::move(config)), impl_(std::make_unique<Impl>()) {}
HttpClient::~HttpClient() = default;

Result<std::unique_ptr<HttpClient>> HttpClient::create(const ClusterConfig& config) {
  globalInit();
  auto c = std::unique_ptr<HttpClient>(new HttpClient(config));
  c->impl_->easy = curl_easy_init();
  c->impl_->multi = curl_multi_init();
  if (!c->impl_->easy || !c->impl_->multi) return makeError("libcurl: cannot create a handle");
  CURL* e = c->impl_->easy;
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");  // gzip for large lists when offered
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, onWrite);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "sluice-policyd");
  if (config.insecureSkipTlsVerify) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!config.caData.empty()) {
    setBlob(e, CURLOPT_CAINFO_BLOB, config.caData);
  } else if (!config.caFile.empty()) {
    curl_easy_setopt(e, CURLOPT_CAINFO, config.caFile.c_str());
  }
  if (!config.clientCertData.empty()) {
    setBlob(e, CURLOPT_SSLCERT_BLOB, config.clientCertData);
  } else if (!config.clientCertFile.empty()) {
    curl_easy_setopt(e, CURLOPT_SSLCERT, config.clientCertFile.c_str());
  }
  if (!config.clientKeyData.empty()) {
    setBlob(e, CURLOPT_SSLKEY_BLOB, config.clientKeyData);
  } else if (!config.clientKeyFile.empty()) {
    curl_easy_setopt(e, CURLOPT_SSLKEY, config.clientKeyFile.c_str());
  }
  return c;
}

Result<HttpOutcome> HttpClient::get(const std::string& target,
                                    const std::function<bool(std::string_view)>& onData,
                                    std::chrono::milliseconds idleTimeout, std::stop_token stop) {
  CURL* e = impl_->easy;
  CURLM* m = impl_->multi;
  std::string url = config_.server + target;
  std::string token = config_.token;
  if (!config_.tokenFile.empty()) {
    // Reread on every request: the kubelet rotates projected service-account tokens.
    auto t = readFile(config_.tokenFile);
    if (!t.ok()) return makeError(t.error().message, kErrTransport);
    token = trimToken(std::move(*t));
  }
  curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
  std::string auth = "Authorization: Bearer " + token;
  if (!token.empty()) headers = curl_slist_append(headers, auth.c_str());
  Transfer t;
  t.onData = &onData;
  t.easy = e;
  t.lastData = std::chrono::steady_clock::now();
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  curl_multi_add_handle(m, e);
  std::stop_callback wake(stop, [m] { curl_multi_wakeup(m); });

  std::optional<Error> failure;
  CURLcode done = CURLE_OK;
  bool finished = false;
  while (!finished) {
    int running = 0;
    curl_multi_perform(m, &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(m, &queued)) {
      if (msg->msg == CURLMSG_DONE) {
        done = msg->data.result;
        finished = true;
      }
    }
    if (finished) break;
    if (stop.stop_requested()) {
      failure = makeError("stopped", kErrStopped);
      break;
    }
    auto idle = std::chrono::steady_clock::now() - t.lastData;
    if (idle >= idleTimeout) {
      failure = makeError("no data for " + std::to_string(idleTimeout.count()) + "ms", kErrStalled);
      break;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(idleTimeout - idle).count();
    curl_multi_poll(m, nullptr, 0, static_cast<int>(std::min<long>(left + 1, 1000)), nullptr);
  }
  curl_multi_remove_handle(m, e);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, nullptr);
  curl_slist_free_all(headers);
  if (failure) return *failure;
  if (!t.statusKnown) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &t.outcome.status);
  if (done != CURLE_OK && !(done == CURLE_WRITE_ERROR && t.outcome.endedByCaller)) {
    std::string why = errbuf[0] ? errbuf : curl_easy_strerror(done);
    return makeError("GET " + url + ": " + why, kErrTransport);
  }
  return t.outcome;
}

}  // namespace sluice::source::kube
