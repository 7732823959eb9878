// Small files under --state-dir, written atomically (temp file in the same directory, fsync,
// rename, fsync of the directory): a reader sees the old content or the new, never a mix, and a
// crash never leaves a torn file.
//
//   endpoints.json  the endpoint registry (registry.h)
//   podcidrs.json   {"podCIDRs":[...]} from --pod-cidr, for the CNI IPAM `usePodCidr` mode
//   ready           present while the daemon is ready (first snapshot compiled and applied);
//                   removed at start and on shutdown (for scripts; CNI STATUS asks the socket:
//                   op "status" answers from the same readiness).
//   applied         wall-clock ns (decimal) at which the daemon began reading the source
//                   snapshot it last applied: every manifest change older than that is enforced
//   applied-versions.json
//                   {"pods":"RV",...}: per resource, the newest resourceVersion the applied
//                   snapshot includes (kube source only): a write with that version or older is
//                   enforced
//   sync.json       the last sync: revision, timings, policy update latency (for benchmarks)
//   source-dir.state  the manifest directory source's last good version of every file
//                   (dir_source.h), so a restart with a broken manifest enforces what was
//                   enforced before
//   lock            flock held while a daemon owns the directory
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/file_util.h"  // readFile, for the readers of these files
#include "common/result.h"

namespace sluice::daemon {

inline constexpr std::string_view kRegistryFile = "endpoints.json";
inline constexpr std::string_view kPodCidrsFile = "podcidrs.json";
inline constexpr std::string_view kReadyFile = "ready";
inline constexpr std::string_view kAppliedFile = "applied";
inline constexpr std::string_view kSyncStatsFile = "sync.json";
inline constexpr std::string_view kAppliedVersionsFile = "applied-versions.json";
inline constexpr std::string_view kDirSourceStateFile = "source-dir.state";
inline constexpr std::string_view kLockFile = "lock";

// `durable`: fsync the data and the directory (the registry); otherwise only rename (status
// files that are rewritten on every sync and need atomicity, not durability).
Status writeFileAtomic(const std::string& path, std::string_view content, bool durable = true);
Status removeFile(const std::string& path);  // succeeds when it is already gone
// Creates the directory (and parents) with mode 0700 when missing.
Status ensureDirectory(const std::string& path);

// Writes podcidrs.json; every entry must parse as a CIDR.
Status writePodCidrs(const std::string& stateDir, const std::vector<std::string>& cidrs);

}  // namespace sluice::daemon
