// The endpoint registry: every pod interface the CNI plugin registered on this node, persisted
// in <state-dir>/endpoints.json so a restarted daemon recovers them all.
//
// File format (version 1):
//   {"version":1,"nextId":7,"endpoints":[{"id":3,"containerId":"...","ifname":"eth0",
//     "netns":"/var/run/netns/x","hostVeth":"sl0123456789a","hostIfindex":12,
//     "ips":["10.1.0.5","fd00::5"],"podNamespace":"default","podName":"web"}]}
// Endpoint ids are allocated from `nextId` and never reused (the datapath keys conntrack and
// counters by id, so a recycled id could inherit a dead pod's flows). Id 0 is never allocated.
//
// Not thread-safe: the node agent's sync path owns it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ip.h"
#include "common/result.h"
#include "policyd/compiler/ir.h"

namespace sluice::daemon {

struct EndpointRecord {
  compiler::EndpointId id = 0;
  std::string containerId;
  std::string ifname;
  std::string netns;
  std::string hostVeth;
  int hostIfindex = 0;
  std::vector<IpAddr> ips;
  std::string podNamespace;
  std::string podName;

  std::string podKey() const { return podNamespace + "/" + podName; }
  bool operator==(const EndpointRecord&) const = default;
};

class Registry {
 public:
  // What load() found. `problem` is set when the file was unreadable or corrupt: the registry
  // starts empty (the node agent rebuilds it from the datapath) and a corrupt file is kept beside
  // it under `keptCopy`.
  struct LoadReport {
    std::optional<Error> problem;
    std::string keptCopy;
  };

  explicit Registry(std::string path) : path_(std::move(path)) {}

  // Reads the file. A missing file is an empty registry. An unreadable or corrupt one yields an
  // empty registry and a report (for a corrupt one, a copy of the bad file:
  // <path>.corrupt-<unix seconds>); only an I/O failure while keeping that copy is an error.
  Result<LoadReport> load();
  Status save() const;

  const EndpointRecord* find(const std::string& containerId, const std::string& ifname) const;
  const EndpointRecord* findById(compiler::EndpointId id) const;
  // An endpoint rebuilt from the datapath without its container id (recovery), found by the host
  // veth name a CNI DEL or CHECK carries.
  const EndpointRecord* findRecoveredByHostVeth(const std::string& hostVeth) const;
  compiler::EndpointId allocateId() { return nextId_++; }
  // Ids below `atLeast` are never allocated (they may still be held by the pinned maps).
  void raiseNextId(compiler::EndpointId atLeast);
  void upsert(EndpointRecord record);
  bool remove(compiler::EndpointId id);

  const std::map<compiler::EndpointId, EndpointRecord>& endpoints() const { return byId_; }
  compiler::EndpointId nextId() const { return nextId_; }
  const std::string& path() const { return path_; }

  // (De)serialisation, exposed for tests.
  std::string encode() const;
  Status decode(std::string_view text);

 private:
  std::string path_;
  std::map<compiler::EndpointId, EndpointRecord> byId_;
  compiler::EndpointId nextId_ = 1;
};

}  // namespace sluice::daemon
