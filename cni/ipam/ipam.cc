#include "cni/ipam/ipam.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "cni/exec.h"
#include "cni/ipam/allocator.h"
#include "cni/ipam/config.h"
#include "cni/ipam/fs.h"
#include "cni/ipam/store.h"

namespace sluice::cni::ipam {

namespace {

constexpr int kDelegateTimeoutMs = 30000;

class BuiltinIpam : public Ipam {
 public:
  BuiltinIpam(const NetConf& conf, const Env& env) : conf_(conf), env_(env), fs_(makeRealFs()) {}

  Result<std::vector<Address>> add() override {
    SLUICE_RETURN_IF_ERROR(load());
    SLUICE_ASSIGN_OR_RETURN(auto lock, lockStore());
    Allocator alloc(*config_, *store_);
    SLUICE_ASSIGN_OR_RETURN(auto allocs, alloc.allocate(attachment(), conf_.runtimeIps));
    std::vector<Address> out;
    for (const auto& a : allocs) out.push_back(Address{a.address, a.subnet.len()});
    return out;
  }

  Status del() override {
    // DEL must work even when the config became invalid (e.g. the podCIDR file is gone), so
    // it needs only the data directory, not the ranges.
    SLUICE_RETURN_IF_ERROR(loadStoreOnly());
    SLUICE_ASSIGN_OR_RETURN(auto lock, lockStore());
    auto st = store_->release(attachment());
    if (!st.ok()) return withCode(st.error().wrap("ipam release"), kErrInternal);
    return Status::Ok();
  }

  Status check(const std::vector<IpAddr>& ips) override {
    SLUICE_RETURN_IF_ERROR(loadStoreOnly());
    SLUICE_ASSIGN_OR_RETURN(auto lock, lockStore());
    auto held = store_->addressesOf(attachment());
    if (!held.ok()) return withCode(held.error(), kErrInternal);
    auto a = *held, b = ips;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) {
      auto join = [](const std::vector<IpAddr>& v) {
        std::string s;
        for (const auto& ip : v) s += (s.empty() ? "" : ",") + ip.toString();
        return s.empty() ? std::string("none") : s;
      };
      return makeError(
          "ipam: reservation holds [" + join(a) + "] but prevResult has [" + join(b) + "]",
          kErrCheckFailed);
    }
    return Status::Ok();
  }

  Status gc() override {
    SLUICE_RETURN_IF_ERROR(loadStoreOnly());
    SLUICE_ASSIGN_OR_RETURN(auto lock, lockStore());
    auto st = store_->releaseAllExcept(*conf_.validAttachments);
    if (!st.ok()) return withCode(st.error().wrap("ipam gc"), kErrInternal);
    return Status::Ok();
  }

  Status status() override {
    auto st = load();
    if (!st.ok()) return withCode(st.error(), kErrNotAvailable);
    auto lock = lockStore();
    if (!lock.ok()) return withCode(lock.error(), kErrNotAvailable);
    return Status::Ok();
  }

 private:
  Attachment attachment() const { return Attachment{env_.containerId, env_.ifname}; }

  Status load() {
    if (config_) return Status::Ok();
    auto cfg = parseIpamConfig(conf_.ipam, readWholeFile);
    if (!cfg.ok()) return std::move(cfg).error();
    config_ = std::move(cfg).value();
    store_ = makeDiskStore(*fs_, config_->dataDir, conf_.name);
    return Status::Ok();
  }

  Status loadStoreOnly() {
    if (store_) return Status::Ok();
    std::string dataDir = "/var/lib/cni/networks";
    if (auto it = conf_.ipam.find("dataDir"); it != conf_.ipam.end()) {
      if (!it->is_string() || it->get<std::string>().empty()) {
        return makeError("ipam.dataDir: must be a non-empty string", kErrInvalidConfig);
      }
      dataDir = it->get<std::string>();
    }
    store_ = makeDiskStore(*fs_, dataDir, conf_.name);
    return Status::Ok();
  }

  Result<std::unique_ptr<FsLock>> lockStore() {
    auto l = store_->lock();
    if (!l.ok()) return withCode(std::move(l).error().wrap("ipam lock"), kErrInternal);
    return l;
  }

  const NetConf& conf_;
  const Env& env_;
  std::unique_ptr<Fs> fs_;
  std::optional<IpamConfig> config_;
  std::unique_ptr<Store> store_;
};

const char* commandName(Command c) {
  switch (c) {
    case Command::Add:
      return "ADD";
    case Command::Del:
      return "DEL";
    case Command::Check:
      return "CHECK";
    case Command::Version:
      return "VERSION";
    case Command::Status:
      return "STATUS";
    case Command::Gc:
      return "GC";
  }
  return "VERSION";
}

class DelegatedIpam : public Ipam {
 public:
  DelegatedIpam(const NetConf& conf, const Env& env) : conf_(conf), env_(env) {}

  Result<std::vector<Address>> add() override {
    SLUICE_ASSIGN_OR_RETURN(PluginRun run, invoke(Command::Add, conf_.raw));
    if (run.exitCode != 0) return decodePluginError(conf_.ipamType, run);
    SLUICE_ASSIGN_OR_RETURN(json j, parseJson(run.out, conf_.ipamType + " result"));
    SLUICE_ASSIGN_OR_RETURN(CniResult r, decodeResult(j, conf_.ipamType + " result"));
    if (r.ips.empty()) return makeError(conf_.ipamType + ": result has no IPs", kErrInternal);
    std::vector<Address> out;
    for (const auto& ip : r.ips) out.push_back(Address{ip.address, ip.prefixLen});
    return out;
  }

  Status del() override {
    SLUICE_ASSIGN_OR_RETURN(PluginRun run, invoke(Command::Del, conf_.raw));
    if (run.exitCode != 0) return decodePluginError(conf_.ipamType, run);
    return Status::Ok();
  }

  Status check(const std::vector<IpAddr>&) override {
    SLUICE_ASSIGN_OR_RETURN(PluginRun run, invoke(Command::Check, conf_.raw));
    if (run.exitCode != 0) return decodePluginError(conf_.ipamType, run);
    return Status::Ok();
  }

  Status gc() override { return optionalCommand(Command::Gc); }
  Status status() override { return optionalCommand(Command::Status); }

 private:
  // GC and STATUS exist since 1.1.0; a delegate that predates them answers "unknown command"
  // or "incompatible version", which must not fail our GC/STATUS.
  Status optionalCommand(Command c) {
    SLUICE_ASSIGN_OR_RETURN(PluginRun run, invoke(c, conf_.raw));
    if (run.exitCode == 0) return Status::Ok();
    Error e = decodePluginError(conf_.ipamType, run);
    if (e.code == kErrIncompatibleVersion || e.code == kErrInvalidEnv || e.code == kErrInternal) {
      spdlog::info("ipam={} command={} ignored: {}", conf_.ipamType, commandName(c), e.message);
      return Status::Ok();
    }
    return e;
  }

  Result<PluginRun> invoke(Command c, const json& conf) {
    std::map<std::string, std::string> env = {{"CNI_COMMAND", commandName(c)}};
    SLUICE_ASSIGN_OR_RETURN(
        PluginRun run, execPlugin(env_.path, conf_.ipamType, env, conf.dump(), kDelegateTimeoutMs));
    // Reference IPAM plugins older than 1.1 reject a 1.1.0 config although its IPAM result
    // is identical in 1.0.0; retry once with 1.0.0 rather than fail every ADD.
    if (run.exitCode != 0 && conf.value("cniVersion", "") == "1.1.0") {
      Error e = decodePluginError(conf_.ipamType, run);
      if (e.code == kErrIncompatibleVersion) {
        json older = conf;
        older["cniVersion"] = "1.0.0";
        return execPlugin(env_.path, conf_.ipamType, env, older.dump(), kDelegateTimeoutMs);
      }
    }
    return run;
  }

  const NetConf& conf_;
  const Env& env_;
};

}  // namespace

std::unique_ptr<Ipam> makeIpam(const NetConf& conf, const Env& env) {
  if (conf.ipamType == "sluice") return std::make_unique<BuiltinIpam>(conf, env);
  return std::make_unique<DelegatedIpam>(conf, env);
}

}  // namespace sluice::cni::ipam
