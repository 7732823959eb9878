// Routed pod wiring (DESIGN.md §3): a veth pair per attachment, no bridge.
//
//   pod netns                               host netns (where the plugin runs)
//   CNI_IFNAME  <──── veth ────>  sl<11 hex>   (no IPv4 address)
//     10.244.1.5/32, fd00::5/128             routes 10.244.1.5/32, fd00::5/128 dev sl…
//     default via 169.254.1.1 onlink         forwarding=1, rp_filter=0 on sl… only
//     default via fe80::1                    accept_dad=0 so its link-local answers ND at once
//     neigh 169.254.1.1, fe80::1 -> MAC(sl…) permanent
//
// The gateways are fixed, well-known addresses no host interface carries: the pod resolves
// them through permanent neighbour entries to the host veth's MAC, so there is no ARP/ND for
// the gateway, and nothing in the pod depends on the node's addresses. fe80::1 is valid on every
// link and never leaves it. The host reaches the pod through ordinary ARP/ND on the veth; a
// STALE neighbour entry with the pod's MAC is seeded so the first packet needs no resolution
// but the kernel still revalidates it (a chained `tuning` plugin may change the pod's MAC).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cni/spec.h"
#include "common/netlink.h"

namespace sluice::cni {

constexpr const char* kGatewayV4 = "169.254.1.1";
constexpr const char* kGatewayV6 = "fe80::1";

// "sl" + the first 11 hex digits of sha256(containerID + "/" + ifname).
std::string hostVethName(const Attachment& a);
// Locally administered unicast MAC for the host veth, from the same hash (stable, so CHECK
// and operators can predict it).
netlink::Mac hostVethMac(const Attachment& a);
// IFLA_IFALIAS on the host veth: lets GC find this network's veths and their attachments.
std::string vethAlias(const std::string& network, const Attachment& a);
std::optional<Attachment> parseVethAlias(const std::string& network, const std::string& alias);

struct WiringSpec {
  Attachment attachment;
  std::string network;
  std::string netnsPath;
  int mtu = 0;
  std::optional<netlink::Mac> podMac;
  std::vector<IpAddr> ips;
};

struct Wired {
  std::string hostVeth;
  int hostIfindex = 0;
  netlink::Mac hostMac{};
  netlink::Mac podMac{};
  int mtu = 0;
};

// Called before each step with its name; a failing hook aborts there (failure injection in
// the privileged tests, see main.cc). Steps: "veth", "host-sysctl", "pod-addr", "pod-routes"
// (wire), then "host-up", "host-routes" (activate).
using StepHook = std::function<Status(std::string_view step)>;

// Creates the veth pair and configures the pod side, leaving the host veth administratively
// down: no packet can enter or leave the pod, and the host has no route to it. The caller
// registers the endpoint with the policy daemon (which attaches enforcement to the down veth)
// and only then calls activate(), so a pod's first packet already meets its policy.
// On failure removes what it created and returns the error.
Result<Wired> wire(const WiringSpec& spec, const StepHook& hook);
// Brings the host veth up and adds the host routes and neighbours to the pod. On failure the
// caller unwires.
Status activate(const WiringSpec& spec, const Wired& w, const StepHook& hook);
// Removes the host veth (and with it the pod end and the host routes through it). Succeeds when
// the veth or the pod's namespace is already gone.
//
// Destroying a veth blocks the caller for 10-30 ms in the kernel (rcu_barrier in
// netdev_run_todo), which would dominate DEL. With `deferDestroy` the link is first set down,
// which synchronously withdraws every route through it and stops all traffic, and a detached
// child then destroys it while DEL returns. A leftover (e.g. the child was killed) is inert,
// down, and removed by the next ADD of the same attachment or by GC.
Status unwire(const Attachment& a, bool deferDestroy = false);
// Compares the live state with `prev` (the prevResult) and lists every difference.
Status checkWiring(const WiringSpec& spec, const CniResult& prev);
// Deletes this network's host veths whose attachment is not in `valid`.
Status gcVeths(const std::string& network, const std::vector<Attachment>& valid);

}  // namespace sluice::cni
