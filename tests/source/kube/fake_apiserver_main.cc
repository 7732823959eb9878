// sluice-test-apiserver: the in-process test API server as a program, serving a generated
// cluster (for the daemon's `--source kube` memory and latency measurements at scale).
//
//   sluice-test-apiserver --pods N --namespaces M --policies P [--node NAME]
//
// Prints the URL on the first line of stdout, then serves plain HTTP on 127.0.0.1 (no
// authentication) until stdin closes or SIGTERM/SIGINT arrives.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/source/kube/fake_apiserver.h"

int main(int argc, char** argv) {
  int pods = 1000, namespaces = 50, policies = 100;
  std::string node = "node-a";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i];
    if (f == "--pods") {
      pods = std::atoi(argv[i + 1]);
    } else if (f == "--namespaces") {
      namespaces = std::max(1, std::atoi(argv[i + 1]));
    } else if (f == "--policies") {
      policies = std::atoi(argv[i + 1]);
    } else if (f == "--node") {
      node = argv[i + 1];
    } else {
      std::fprintf(stderr, "usage: %s --pods N --namespaces M --policies P [--node NAME]\n",
                   argv[0]);
      return 2;
    }
  }
  using sluice::testing::FakeApiServer;
  namespace t = sluice::testing;
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  FakeApiServer server;
  for (int n = 0; n < namespaces; ++n)
    server.upsert(t::kNamespaces, t::namespaceJson("ns-" + std::to_string(n),
                                                   {{"team", "t" + std::to_string(n % 20)}}));
  for (int p = 0; p < pods; ++p) {
    std::string ip = "10." + std::to_string(64 + p / 65536) + "." + std::to_string(p / 256 % 256) +
                     "." + std::to_string(p % 256);
    server.upsert(t::kPods,
                  t::podJson("ns-" + std::to_string(p % namespaces), "pod-" + std::to_string(p),
                             {{"app", "app-" + std::to_string(p % 100)},
                              {"tier", p % 3 ? "backend" : "frontend"}},
                             ip, "node-" + std::to_string(p % 100)));
  }
  for (int p = 0; p < policies; ++p) {
    nlohmann::json spec = {
        {"podSelector", {{"matchLabels", {{"app", "app-" + std::to_string(p % 100)}}}}},
        {"ingress",
         {{{"from",
            {{{"namespaceSelector", {{"matchLabels", {{"team", "t" + std::to_string(p % 20)}}}}}},
             {{"podSelector", {{"matchLabels", {{"tier", "frontend"}}}}}}}},
           {"ports", {{{"port", 8080}, {"protocol", "TCP"}}}}}}}};
    server.upsert(t::kPolicies, t::policyJson("ns-" + std::to_string(p % namespaces),
                                              "policy-" + std::to_string(p), spec));
  }
  server.upsert(t::kNodes, t::nodeJson(node, "192.0.2.1", {"10.64.0.0/16"}));
  std::printf("%s\n", server.url().c_str());
  std::fflush(stdout);
  // Until stdin closes (the parent went away) or a signal.
  for (;;) {
    pollfd p{0, POLLIN, 0};
    if (::poll(&p, 1, 200) > 0) {
      char c;
      if (::read(0, &c, 1) <= 0) break;
    }
    siginfo_t info;
    timespec zero{0, 0};
    if (sigtimedwait(&sigs, &info, &zero) > 0) break;
  }
  return 0;
}
