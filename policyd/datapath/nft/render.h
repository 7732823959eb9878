// The lowered table as `nft -f` text: the whole table (golden tests, `sluicectl` showing what a
// node would program) and the transactions the backend writes. nft applies one input file as one
// netlink batch, so every transaction here is atomic: no packet sees a half-written table.
#pragma once

#include <set>
#include <string>

#include "policyd/datapath/nft/lowering.h"

namespace sluice::datapath::nft {

// `table inet sluice { ... }` with every counter, set, map and chain, in a stable order.
std::string renderTable(const Table& t, const NftOptions& opts);

// A transaction applying `ops` (diffTables of the backend's mirror and the desired table):
// adds first (counters, sets, chains), then element deletes and adds, chain rewrites (flush +
// rules), and deletes last, when nothing refers to the deleted objects any more.
std::string renderOps(const TableOps& ops);

// Names of what `table inet sluice` holds in the kernel, read back after a restart.
struct TableNames {
  std::set<std::string> counters;
  std::set<std::string> sets;  // sets and maps
  std::set<std::string> maps;  // the subset of `sets` that are maps
  std::set<std::string> chains;
  bool exists = false;
};

// A transaction that makes an existing table (known only by its object names, after a restart)
// hold exactly `want`, without deleting the table: the existing chains and sets are flushed and
// refilled, and objects `want` lacks are deleted, all in the same batch. Counters that exist in
// both keep their values.
std::string renderReplace(const TableNames& have, const Table& want, const NftOptions& opts);

// Deletes the table (uninstall).
std::string renderDelete();

}  // namespace sluice::datapath::nft
