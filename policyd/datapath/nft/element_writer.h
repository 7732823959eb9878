// Set element updates written directly with libnftnl over libmnl, as one netlink batch (one
// transaction). This is the per-pod churn path: the nft binary would first dump the whole
// ruleset into its cache (seconds for a table with hundreds of thousands of elements, whatever
// the size of the change), a batch of NEWSETELEM/DELSETELEM messages costs only the change.
//
// Supported: the element encodings the lowering produces (ipv4_addr, ipv6_addr, inet_proto,
// inet_service, ifname, mark, nf_proto keys; counter, verdict and mark values), plain sets and
// concatenated interval sets (key + key end). Single-field interval sets are not: their
// start/end element encoding is left to nft (`elementOpsSupported` says false).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "policyd/datapath/nft/lowering.h"

namespace sluice::datapath::nft {

// True when `ops` changes elements only, all of sets this writer can encode (types from
// `sets`, the table the ops apply to).
bool elementOpsSupported(const TableOps& ops, const std::map<std::string, Set>& sets);

// Deletes then adds the elements of `ops`, in one batch, in the calling thread's netns.
Status writeElements(const TableOps& ops, const std::map<std::string, Set>& sets);

}  // namespace sluice::datapath::nft
