#include <exception>

#include "common/endpoint_api.h"
#include "tests/fuzz/targets.h"

namespace sluice::fuzz {

namespace api = endpoint_api;

void endpointLineOne(std::string_view input, const Violation& violation) {
  try {
    auto req = api::decodeRequest(input);
    if (!req.ok()) {
      if (req.error().message.empty()) violation("decodeRequest error without a message");
    } else {
      std::string line = api::encode(*req);
      if (line.find('\n') != std::string::npos) violation("encoded request spans lines");
      auto back = api::decodeRequest(line);
      if (!back.ok()) {
        violation("re-encoded request does not decode: " + back.error().message);
      } else if (back->op != req->op || back->containerId != req->containerId ||
                 back->ifname != req->ifname || back->netns != req->netns ||
                 back->hostVeth != req->hostVeth || back->hostIfindex != req->hostIfindex ||
                 back->ips != req->ips || back->podNamespace != req->podNamespace ||
                 back->podName != req->podName) {
        // Invalid UTF-8 is replaced on encode, so only valid text must survive unchanged.
        if (line.find("\xef\xbf\xbd") == std::string::npos) {
          violation("request does not round-trip: " + line);
        }
      }
      if (req->op == api::Op::Add && (req->containerId.empty() || req->hostVeth.empty())) {
        violation("accepted add without containerID or hostVeth");
      }
    }
    auto reply = api::decodeReply(input);
    if (reply.ok()) {
      if (!reply->ok && reply->error.empty()) violation("refusal without a reason");
      if (reply->ok && reply->retry) violation("success marked retry");
      auto back = api::decodeReply(api::encode(*reply));
      if (!back.ok() || back->ok != reply->ok || back->retry != reply->retry) {
        violation("reply does not round-trip");
      }
    }
  } catch (const std::exception& e) {
    violation(std::string("threw: ") + e.what());
  } catch (...) {
    violation("threw a non-exception");
  }
}

}  // namespace sluice::fuzz
