#include "policyd/datapath/nft/nft_backend.h"

#include <net/if.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/unique_fd.h"
#include "policyd/datapath/bpf/lowering.h"
#include "policyd/datapath/nft/element_writer.h"
#include "policyd/datapath/nft/nflog.h"
#include "policyd/datapath/nft/render.h"

extern char** environ;

namespace sluice::datapath::nft {

namespace {

size_t opCount(const TableOps& ops) {
  size_t n = ops.addCounters.size() + ops.deleteCounters.size() + ops.addSets.size() +
             ops.deleteSets.size() + ops.addChains.size() + ops.rewriteChains.size() +
             ops.deleteChains.size();
  for (const auto& [name, es] : ops.addElements) n += es.size();
  for (const auto& [name, es] : ops.deleteElements) n += es.size();
  return n;
}

const std::string kTable = std::string(kTableFamily) + " " + kTableName;

struct CommandResult {
  int status = -1;     // exit code
  std::string output;  // stdout and stderr
};

Result<UniqueFd> memfd(const char* name) {
  // Inherited by the child on purpose (no MFD_CLOEXEC): it is the child's stdin/stdout.
  int fd = memfd_create(name, 0);
  if (fd < 0) return makeError(std::string("memfd_create: ") + std::strerror(errno), errno);
  return UniqueFd(fd);
}

// Runs argv with `input` as stdin and both output streams captured. Files, not pipes, so a
// large script or listing can never deadlock the two processes.
Result<CommandResult> runCommand(const std::vector<std::string>& argv, const std::string& input) {
  SLUICE_ASSIGN_OR_RETURN(auto in, memfd("sluice-nft-in"));
  SLUICE_ASSIGN_OR_RETURN(auto out, memfd("sluice-nft-out"));
  for (size_t done = 0; done < input.size();) {
    ssize_t n = ::write(in.get(), input.data() + done, input.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return makeError(std::string("writing nft input: ") + std::strerror(errno), errno);
    done += static_cast<size_t>(n);
  }
  if (::lseek(in.get(), 0, SEEK_SET) < 0) {
    return makeError(std::string("lseek: ") + std::strerror(errno), errno);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, out.get(), 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return makeError("spawning " + argv[0] + ": " + std::strerror(rc), rc);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return makeError(std::string("waitpid: ") + std::strerror(errno), errno);
  }
  CommandResult r;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  const off_t size = ::lseek(out.get(), 0, SEEK_END);
  if (size > 0) {
    r.output.resize(static_cast<size_t>(size));
    if (::pread(out.get(), r.output.data(), r.output.size(), 0) != size) {
      return makeError(std::string("reading nft output: ") + std::strerror(errno), errno);
    }
  }
  return r;
}

std::string firstLines(const std::string& s, size_t maxChars = 2000) {
  return s.size() <= maxChars ? s : s.substr(0, maxChars) + "...";
}

Result<nlohmann::json> queryJson(const NftOptions& opts, const std::string& args) {
  SLUICE_ASSIGN_OR_RETURN(auto text, queryNft(opts, args));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.contains("nftables") || !j["nftables"].is_array()) {
    return makeError("nft -j " + args + ": unparsable output: " + firstLines(text, 200));
  }
  return j;
}

// "ep_<id>_from" -> id.
std::optional<compiler::EndpointId> endpointOfChain(const std::string& chain) {
  if (chain.rfind("ep_", 0) != 0) return std::nullopt;
  const size_t end = chain.find('_', 3);
  if (end == std::string::npos) return std::nullopt;
  try {
    return static_cast<compiler::EndpointId>(std::stoul(chain.substr(3, end - 3)));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

Status runNft(const NftOptions& opts, const std::string& script) {
  SLUICE_ASSIGN_OR_RETURN(auto r, runCommand({opts.nftBinary, "-f", "-"}, script));
  if (r.status != 0) {
    return makeError("nft -f (" + std::to_string(std::count(script.begin(), script.end(), '\n')) +
                     " commands) exited " + std::to_string(r.status) + ": " + firstLines(r.output));
  }
  return Status::Ok();
}

Result<std::string> queryNft(const NftOptions& opts, const std::string& args) {
  std::vector<std::string> argv = {opts.nftBinary, "-j"};
  for (size_t i = 0; i < args.size();) {
    size_t j = args.find(' ', i);
    if (j == std::string::npos) j = args.size();
    if (j > i) argv.push_back(args.substr(i, j - i));
    i = j + 1;
  }
  SLUICE_ASSIGN_OR_RETURN(auto r, runCommand(argv, ""));
  if (r.status != 0) {
    return makeError(
        "nft -j " + args + " exited " + std::to_string(r.status) + ": " + firstLines(r.output),
        r.status);
  }
  return r.output;
}

Result<TableNames> readTableNames(const NftOptions& opts) {
  TableNames names;
  SLUICE_ASSIGN_OR_RETURN(
      auto r, runCommand({opts.nftBinary, "-j", "list", "table", kTableFamily, kTableName}, ""));
  if (r.status != 0) {
    if (r.output.find("No such file or directory") != std::string::npos) return names;
    return makeError("nft -j list table " + kTable + " exited " + std::to_string(r.status) + ": " +
                     firstLines(r.output));
  }
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  if (j.is_discarded() || !j.contains("nftables")) {
    return makeError("nft -j list table " + kTable + ": unparsable output");
  }
  names.exists = true;
  for (const auto& o : j["nftables"]) {
    if (o.contains("chain")) names.chains.insert(o["chain"].value("name", ""));
    if (o.contains("set")) names.sets.insert(o["set"].value("name", ""));
    if (o.contains("map")) {
      names.sets.insert(o["map"].value("name", ""));
      names.maps.insert(o["map"].value("name", ""));
    }
    if (o.contains("counter")) names.counters.insert(o["counter"].value("name", ""));
  }
  return names;
}

Status uninstall(const NftOptions& opts) {
  SLUICE_ASSIGN_OR_RETURN(auto names, readTableNames(opts));
  if (!names.exists) return Status::Ok();
  if (auto st = runNft(opts, renderDelete()); !st.ok()) return st.error().wrap("uninstall");
  spdlog::info("table={} uninstall ok", kTable);
  return Status::Ok();
}

Status NftBackend::write(const compiler::State& state) {
  Table want = lower(state, attachments_, opts_);
  std::string script;
  if (mirror_) {
    const TableOps ops = diffTables(*mirror_, want);
    if (ops.empty()) return Status::Ok();
    SLUICE_RETURN_IF_ERROR(writeOps(ops));
    mirror_ = std::move(want);
    return Status::Ok();
  } else {
    // First write of this process: the table may hold what a previous daemon wrote. Its
    // endpoints stay enforced until the daemon detaches them (never dropped from dispatch only
    // because this process has not attached them again yet).
    SLUICE_ASSIGN_OR_RETURN(auto names, readTableNames(opts_));
    if (names.exists) {
      SLUICE_ASSIGN_OR_RETURN(auto existing, endpoints());
      for (EndpointAttachment& a : existing) {
        if (!attachments_.contains(a.id) && !detachedBeforeWrite_.contains(a.id)) {
          attachments_.emplace(a.id, std::move(a));
        }
      }
      want = lower(state, attachments_, opts_);
    }
    script = renderReplace(names, want, opts_);
  }
  SLUICE_RETURN_IF_ERROR(runNft(opts_, script));
  mirror_ = std::move(want);
  detachedBeforeWrite_.clear();
  return Status::Ok();
}

Status NftBackend::writeScoped(const compiler::State& state, compiler::EndpointId id) {
  const std::set<compiler::EndpointId> ids{id};
  const TableOps ops =
      diffTables(scopedTable(*mirror_, ids), lowerEndpoints(state, attachments_, opts_, ids));
  if (ops.empty()) return Status::Ok();
  SLUICE_RETURN_IF_ERROR(writeOps(ops));
  applyOps(*mirror_, ops);
  return Status::Ok();
}

Status NftBackend::writeOps(const TableOps& ops) {
  if (opts_.netlinkElements && elementOpsSupported(ops, mirror_->sets)) {
    return writeElements(ops, mirror_->sets);
  }
  return runNft(opts_, renderOps(ops));
}

Status NftBackend::attach(const EndpointAttachment& ep) {
  std::lock_guard lock(mu_);
  if (!state_ && !mirror_) {
    // A restart re-attaches its endpoints before the first sync. Where the table already
    // dispatches this interface to this endpoint, it stays as the earlier instance left it
    // (enforcing the last applied policy) until sync() rewrites it: writing now, without the
    // IR, would turn every endpoint to not-ready until then.
    SLUICE_ASSIGN_OR_RETURN(auto present, endpoints());
    for (const EndpointAttachment& a : present) {
      if (a.id == ep.id && a.ifname == ep.ifname) {
        attachments_[ep.id] = ep;
        detachedBeforeWrite_.erase(ep.id);
        return Status::Ok();
      }
    }
  }
  auto previous = attachments_.find(ep.id);
  std::optional<EndpointAttachment> old;
  if (previous != attachments_.end()) old = previous->second;
  attachments_[ep.id] = ep;
  static const compiler::State kNone;
  auto st =
      mirror_ ? writeScoped(state_ ? *state_ : kNone, ep.id) : write(state_ ? *state_ : kNone);
  if (!st.ok()) {
    if (old) {
      attachments_[ep.id] = *old;
    } else {
      attachments_.erase(ep.id);
    }
    return st.error().wrap("attach endpoint " + std::to_string(ep.id) + " " + ep.ifname);
  }
  return Status::Ok();
}

Status NftBackend::detach(const EndpointAttachment& ep) {
  std::lock_guard lock(mu_);
  if (!state_ && !mirror_) {
    // Before this process's first write (a restart dropping an endpoint whose pod went away):
    // the first write leaves it out instead of carrying it over; until then the table keeps
    // enforcing what the earlier instance wrote for everyone else.
    attachments_.erase(ep.id);
    detachedBeforeWrite_.insert(ep.id);
    return Status::Ok();
  }
  auto it = attachments_.find(ep.id);
  if (it == attachments_.end()) return Status::Ok();
  const EndpointAttachment old = it->second;
  attachments_.erase(it);
  static const compiler::State kNone;
  auto st =
      mirror_ ? writeScoped(state_ ? *state_ : kNone, ep.id) : write(state_ ? *state_ : kNone);
  if (!st.ok()) {
    attachments_[ep.id] = old;
    return st.error().wrap("detach endpoint " + std::to_string(ep.id) + " " + ep.ifname);
  }
  return Status::Ok();
}

Result<bool> NftBackend::attached(const EndpointAttachment& ep) {
  if (if_nametoindex(ep.ifname.c_str()) == 0) return false;
  SLUICE_ASSIGN_OR_RETURN(auto all, endpoints());
  for (const EndpointAttachment& a : all) {
    if (a.id == ep.id && a.ifname == ep.ifname) return true;
  }
  return false;
}

Status NftBackend::apply(const compiler::Diff& diff) {
  std::lock_guard lock(mu_);
  if (!state_) {
    // Backend contract (backend.h): a table this process did not write has no known IR, so a
    // diff has no base. Without a table, the base is the empty State.
    if (!mirror_) {
      SLUICE_ASSIGN_OR_RETURN(auto names, readTableNames(opts_));
      if (names.exists) {
        return makeError("apply revision " + std::to_string(diff.revision) + ": table " + kTable +
                         " was written by an earlier instance; sync before applying diffs");
      }
    }
    // This process created the table (or there is none): its base is the empty State.
    compiler::State first;
    bpf::applyDiff(first, diff);
    if (auto st = write(first); !st.ok()) {
      return st.error().wrap("apply revision " + std::to_string(diff.revision));
    }
    state_ = std::move(first);
    return Status::Ok();
  }
  // In place: per-pod churn must not cost a copy of the whole state or table.
  const auto t0 = std::chrono::steady_clock::now();
  const TableOps ops = lowerDiffInPlace(*mirror_, *state_, attachments_, diff, opts_);
  const auto t1 = std::chrono::steady_clock::now();
  if (!ops.empty()) {
    if (auto st = writeOps(ops); !st.ok()) {
      // The transaction did not happen, but the mirror and state already moved on: forget both,
      // so the next write starts from the kernel (the daemon syncs after a failed apply).
      mirror_.reset();
      state_.reset();
      return st.error().wrap("apply revision " + std::to_string(diff.revision));
    }
  }
  const auto t2 = std::chrono::steady_clock::now();
  using ms = std::chrono::duration<double, std::milli>;
  spdlog::info("nft apply revision={} lower_ms={:.1f} write_ms={:.1f} ops={}", diff.revision,
               ms(t1 - t0).count(), ms(t2 - t1).count(), opCount(ops));
  return Status::Ok();
}

Status NftBackend::sync(const compiler::State& desired) {
  std::lock_guard lock(mu_);
  if (auto st = write(desired); !st.ok()) {
    return st.error().wrap("sync revision " + std::to_string(desired.revision));
  }
  state_ = desired;
  return Status::Ok();
}

Result<std::vector<RuleCounter>> NftBackend::counters() {
  SLUICE_ASSIGN_OR_RETURN(auto j, queryJson(opts_, "list counters table " + kTable));
  std::vector<RuleCounter> out;
  for (const auto& o : j["nftables"]) {
    if (!o.contains("counter")) continue;
    const auto& c = o["counter"];
    const std::string name = c.value("name", "");
    if (name.rfind("rule_", 0) != 0) continue;
    RuleCounter rc;
    rc.rule = static_cast<compiler::RuleId>(std::stoul(name.substr(5)));
    rc.packets = c.value("packets", uint64_t{0});
    rc.bytes = c.value("bytes", uint64_t{0});
    out.push_back(rc);
  }
  return out;
}

Result<std::vector<DropCount>> NftBackend::dropCounts() {
  SLUICE_ASSIGN_OR_RETURN(auto j, queryJson(opts_, "list counters table " + kTable));
  std::vector<DropCount> out;
  for (const std::string& reason : dropReasons()) {
    std::string name = "drop_" + reason;
    std::replace(name.begin(), name.end(), '-', '_');
    DropCount d{reason, 0, 0};
    for (const auto& o : j["nftables"]) {
      if (o.contains("counter") && o["counter"].value("name", "") == name) {
        d.packets = o["counter"].value("packets", uint64_t{0});
        d.bytes = o["counter"].value("bytes", uint64_t{0});
      }
    }
    out.push_back(d);
  }
  return out;
}

Result<std::unique_ptr<FlowEventReader>> NftBackend::openFlowEvents() {
  auto reader = openNflogReader(opts_.logGroup);
  if (!reader.ok()) return reader.error().wrap("nft datapath flow events");
  return reader;
}

Result<std::vector<EndpointAttachment>> NftBackend::endpoints() {
  std::map<compiler::EndpointId, EndpointAttachment> byId;
  std::map<std::string, compiler::EndpointId> byName;
  SLUICE_ASSIGN_OR_RETURN(auto names, readTableNames(opts_));
  if (!names.exists) return std::vector<EndpointAttachment>{};
  SLUICE_ASSIGN_OR_RETURN(auto from, queryJson(opts_, "list map " + kTable + " from_pod"));
  for (const auto& o : from["nftables"]) {
    if (!o.contains("map") || !o["map"].contains("elem")) continue;
    for (const auto& e : o["map"]["elem"]) {
      // [ "ifname", { "jump": { "target": "ep_<id>_from" } } ]
      if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].contains("jump")) continue;
      auto id = endpointOfChain(e[1]["jump"].value("target", ""));
      if (!id) continue;
      EndpointAttachment a;
      a.id = *id;
      a.ifname = e[0].get<std::string>();
      a.ifindex = static_cast<int>(if_nametoindex(a.ifname.c_str()));
      byName[a.ifname] = a.id;
      byId[a.id] = std::move(a);
    }
  }
  for (const char* set : {"pod_src4", "pod_src6"}) {
    SLUICE_ASSIGN_OR_RETURN(auto src, queryJson(opts_, "list set " + kTable + " " + set));
    for (const auto& o : src["nftables"]) {
      if (!o.contains("set") || !o["set"].contains("elem")) continue;
      for (const auto& e : o["set"]["elem"]) {
        // { "concat": [ "ifname", "10.0.0.5" ] }
        if (!e.contains("concat") || e["concat"].size() != 2) continue;
        auto it = byName.find(e["concat"][0].get<std::string>());
        auto ip = IpAddr::parse(e["concat"][1].get<std::string>());
        if (it != byName.end() && ip.ok()) byId[it->second].ips.push_back(*ip);
      }
    }
  }
  std::vector<EndpointAttachment> out;
  for (auto& [id, a] : byId) out.push_back(std::move(a));
  return out;
}

Result<std::unique_ptr<Backend>> makeNftBackend(const NftOptions& opts) {
  return std::unique_ptr<Backend>(std::make_unique<NftBackend>(opts));
}

}  // namespace sluice::datapath::nft
