// Storage for address reservations, separate from allocation policy (allocator.h). All calls
// other than lock() expect the caller to hold the lock.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cni/ipam/fs.h"
#include "cni/spec.h"
#include "common/ip.h"
#include "common/result.h"

namespace sluice::cni::ipam {

class Store {
 public:
  virtual ~Store() = default;
  // Serializes concurrent plugin invocations on this node for one network.
  virtual Result<std::unique_ptr<FsLock>> lock() = 0;
  // The addresses an attachment holds, in reservation order; empty if none. O(1): read from
  // the attachment's own record, never by scanning all addresses.
  virtual Result<std::vector<IpAddr>> addressesOf(const Attachment& a) = 0;
  virtual Result<bool> isReserved(const IpAddr& ip) = 0;
  virtual Result<std::optional<Attachment>> ownerOf(const IpAddr& ip) = 0;
  // Records `ips` for `a`. Fails (code EEXIST) if any address is taken; then nothing is kept.
  virtual Status reserve(const Attachment& a, const std::vector<IpAddr>& ips) = 0;
  // Releases everything `a` holds. Idempotent.
  virtual Status release(const Attachment& a) = 0;
  // Round-robin cursor per range set.
  virtual Result<std::optional<IpAddr>> lastReserved(size_t rangeSet) = 0;
  virtual Status setLastReserved(size_t rangeSet, const IpAddr& ip) = 0;
  // GC: every attachment known to the store (records and orphaned address files alike).
  virtual Result<std::vector<Attachment>> attachments() = 0;
  // GC: removes address files owned by attachments not in `keep` (orphans of crashed ADDs).
  virtual Status releaseAllExcept(const std::vector<Attachment>& keep) = 0;
};

// The on-disk store under <dataDir>/<network>/, laid out like host-local's so an operator (or
// a migration) recognises it:
//   lock                    flock(2) target
//   <ip>                    one file per reserved address: "<containerID>\r\n<ifname>",
//                           created O_EXCL
//   last_reserved_ip.<n>    round-robin cursor of range set n
//   attachments/<sha256>    per attachment: {"containerID","ifname","ips"}; the index that makes
//                           idempotent ADD and DEL O(1). Written before the address files so a
//                           crash never leaves an address no record points to unnoticed.
std::unique_ptr<Store> makeDiskStore(Fs& fs, const std::string& dataDir, const std::string& network);

}  // namespace sluice::cni::ipam
