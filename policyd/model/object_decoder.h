// Internal to the decoder: the one validation walk over a decoded document, written once as a
// template over the node adapters in tree_node.h (YAML and JSON). It checks what the API server
// checks for Namespace, Pod and networking.k8s.io/v1 NetworkPolicy, applies the API defaults,
// and records every problem with the field path it was found at.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "policyd/model/tree_node.h"
#include "policyd/model/types.h"
#include "policyd/model/validate.h"

namespace sluice::model::detail {

// The field being decoded, as segments; rendered ("spec.ingress[0].from[1]") only when a
// problem is reported, so the valid path (100,000 pods) never builds strings.
class FieldPath {
 public:
  void push(const char* key) { segs_.push_back({key, 0}); }
  void push(size_t index) { segs_.push_back({nullptr, index}); }
  void pop() { segs_.pop_back(); }
  std::string render() const;

 private:
  struct Seg {
    const char* key;  // nullptr for a list index
    size_t index;
  };
  std::vector<Seg> segs_;
};

// Problems found in one object, each "field.path: what is wrong".
class Problems {
 public:
  // An object with many problems gets a bounded report: enough to fix it, not a wall of text.
  static constexpr size_t kMaxProblems = 8;

  void add(const std::string& what);
  bool any() const { return count_ > 0; }
  size_t count() const { return count_; }
  const std::vector<std::string>& list() const { return list_; }
  FieldPath& path() { return path_; }

 private:
  FieldPath path_;
  std::vector<std::string> list_;
  size_t count_ = 0;
};

class [[nodiscard]] PathScope {
 public:
  PathScope(Problems& p, const char* key) : p_(p) { p_.path().push(key); }
  PathScope(Problems& p, size_t index) : p_(p) { p_.path().push(index); }
  ~PathScope() { p_.path().pop(); }
  PathScope(const PathScope&) = delete;
  PathScope& operator=(const PathScope&) = delete;

 private:
  Problems& p_;
};

template <class N>
class ObjectDecoder {
 public:
  // `notes` receives informational messages (relative to the object, like problems).
  ObjectDecoder(Problems& problems, std::vector<std::string>& notes)
      : p_(problems), notes_(notes) {}

  // metadata.name / metadata.namespace / metadata.labels. Runs first so that the caller can
  // name the object in messages about the rest.
  void metadata(const N& obj, bool namespaced, bool nameIsDnsLabel, std::string& ns,
                std::string& name, Labels& labels);

  void namespaceBody(const N& obj, Namespace& out);
  void podBody(const N& obj, Pod& out);
  void policyBody(const N& obj, NetworkPolicy& out);
  // metadata.annotations["sluice.io/enforcement"]; the other annotations are not read.
  void enforcement(const N& obj, NetworkPolicy& out);

 private:
  bool expect(const N& n, NodeType want);
  const std::string* string(const N& n);
  void checkFields(const N& map, std::initializer_list<std::string_view> allowed);
  void labels(const N& n, Labels& out);
  void selector(const N& n, LabelSelector& out);
  void requirement(const N& n, SelectorRequirement& out);
  void peer(const N& n, Peer& out);
  void ipBlock(const N& n, IPBlock& out);
  void policyPort(const N& n, PortSpec& out);
  void rules(const N& n, const char* peersKey, std::vector<Rule>& out);
  void containerPorts(const N& container, std::vector<ContainerPort>& out);
  std::optional<Protocol> protocol(const N& n);
  std::optional<uint16_t> portNumber(const N& n);
  void note(const std::string& what) { notes_.push_back(what); }
  Result<Prefix> parseBlockPrefix(const std::string& text, std::string field, IPBlock& out);

  Problems& p_;
  std::vector<std::string>& notes_;
};

// ---- implementation (templates) ----

template <class N>
std::string typeMismatch(const N& n, NodeType want) {
  std::string msg =
      std::string("expected ") + nodeTypeName(want) + ", got " + nodeTypeName(n.type());
  if constexpr (std::is_same_v<N, YamlNode>) {
    // A plain YAML scalar that resolved to a number or boolean: the usual fix is quoting.
    if (want == NodeType::String &&
        (n.type() == NodeType::Int || n.type() == NodeType::Float || n.type() == NodeType::Bool))
      msg += " (quote it: \"" + n.str() + "\")";
  }
  return msg;
}

template <class N>
bool ObjectDecoder<N>::expect(const N& n, NodeType want) {
  if (n.type() == want) return true;
  p_.add(typeMismatch(n, want));
  return false;
}

template <class N>
const std::string* ObjectDecoder<N>::string(const N& n) {
  return expect(n, NodeType::String) ? &n.str() : nullptr;
}

template <class N>
void ObjectDecoder<N>::checkFields(const N& map, std::initializer_list<std::string_view> allowed) {
  // The API server rejects unknown fields (kubectl --validate=strict). For policies this matters
  // more than usual: a misspelt `podSelectr` would otherwise widen the policy to every pod.
  map.forEachEntry([&](const std::string& key, const N&) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      p_.add("unknown field \"" + key + "\"");
  });
}

template <class N>
void ObjectDecoder<N>::labels(const N& n, Labels& out) {
  if (!expect(n, NodeType::Map)) return;
  n.forEachEntry([&](const std::string& key, const N& value) {
    if (auto e = validateLabelKey(key); !e.empty()) {
      p_.add("invalid label key \"" + key + "\": " + e);
      return;
    }
    if (value.type() == NodeType::Null) {
      out.emplace(key, "");  // `key:` / null decodes to "" in the API's map[string]string
      return;
    }
    if (value.type() != NodeType::String) {
      p_.add("value of label \"" + key + "\": " + typeMismatch(value, NodeType::String));
      return;
    }
    if (auto e = validateLabelValue(value.str()); !e.empty()) {
      p_.add("invalid value \"" + value.str() + "\" for label \"" + key + "\": " + e);
      return;
    }
    out.emplace(key, value.str());
  });
}

template <class N>
void ObjectDecoder<N>::selector(const N& n, LabelSelector& out) {
  if (!expect(n, NodeType::Map)) return;
  checkFields(n, {"matchLabels", "matchExpressions"});
  if (auto ml = n.get("matchLabels")) {
    PathScope s(p_, "matchLabels");
    labels(*ml, out.matchLabels);
  }
  if (auto me = n.get("matchExpressions")) {
    PathScope s(p_, "matchExpressions");
    if (!expect(*me, NodeType::Seq)) return;
    out.matchExpressions.reserve(me->size());
    me->forEachItem([&](size_t i, const N& item) {
      PathScope si(p_, i);
      requirement(item, out.matchExpressions.emplace_back());
    });
  }
}

template <class N>
void ObjectDecoder<N>::requirement(const N& n, SelectorRequirement& out) {
  if (!expect(n, NodeType::Map)) return;
  checkFields(n, {"key", "operator", "values"});
  {
    PathScope s(p_, "key");
    auto key = n.get("key");
    if (!key) {
      p_.add("required");
    } else if (const std::string* k = string(*key)) {
      if (auto e = validateLabelKey(*k); !e.empty())
        p_.add("invalid label key \"" + *k + "\": " + e);
      out.key = *k;
    }
  }
  bool opKnown = false;
  {
    PathScope s(p_, "operator");
    auto op = n.get("operator");
    if (!op) {
      p_.add("required");
    } else if (const std::string* o = string(*op)) {
      opKnown = true;
      if (*o == "In") {
        out.op = SelectorOp::In;
      } else if (*o == "NotIn") {
        out.op = SelectorOp::NotIn;
      } else if (*o == "Exists") {
        out.op = SelectorOp::Exists;
      } else if (*o == "DoesNotExist") {
        out.op = SelectorOp::DoesNotExist;
      } else {
        opKnown = false;
        p_.add("unsupported operator \"" + *o + "\": must be In, NotIn, Exists or DoesNotExist");
      }
    }
  }
  PathScope s(p_, "values");
  if (auto values = n.get("values")) {
    if (expect(*values, NodeType::Seq)) {
      out.values.reserve(values->size());
      values->forEachItem([&](size_t i, const N& v) {
        PathScope si(p_, i);
        if (const std::string* str = string(v)) {
          if (auto e = validateLabelValue(*str); !e.empty())
            p_.add("invalid label value \"" + *str + "\": " + e);
          out.values.push_back(*str);
        }
      });
    }
  }
  if (opKnown) {
    bool set = out.op == SelectorOp::In || out.op == SelectorOp::NotIn;
    if (set && out.values.empty())
      p_.add("must be non-empty when operator is " +
             std::string(out.op == SelectorOp::In ? "In" : "NotIn"));
    if (!set && !out.values.empty())
      p_.add("must be empty when operator is " +
             std::string(out.op == SelectorOp::Exists ? "Exists" : "DoesNotExist"));
  }
  // Matching uses binary search over the values.
  std::sort(out.values.begin(), out.values.end());
  out.values.erase(std::unique(out.values.begin(), out.values.end()), out.values.end());
}

template <class N>
void ObjectDecoder<N>::peer(const N& n, Peer& out) {
  if (!expect(n, NodeType::Map)) return;
  checkFields(n, {"podSelector", "namespaceSelector", "ipBlock"});
  if (auto ps = n.get("podSelector")) {
    PathScope s(p_, "podSelector");
    selector(*ps, out.podSelector.emplace());
  }
  if (auto ns = n.get("namespaceSelector")) {
    PathScope s(p_, "namespaceSelector");
    selector(*ns, out.namespaceSelector.emplace());
  }
  if (auto ib = n.get("ipBlock")) {
    PathScope s(p_, "ipBlock");
    ipBlock(*ib, out.ipBlock.emplace());
  }
  bool anySelector = out.podSelector || out.namespaceSelector;
  if (!anySelector && !out.ipBlock)
    p_.add(
        "a peer must set podSelector, namespaceSelector or ipBlock ({} is not a valid peer; "
        "to allow all peers, omit from/to)");
  if (anySelector && out.ipBlock)
    p_.add(
        "ipBlock cannot be combined with podSelector or namespaceSelector in one peer; "
        "use separate peers");
}

template <class N>
Result<Prefix> ObjectDecoder<N>::parseBlockPrefix(const std::string& text, std::string field,
                                                  IPBlock& out) {
  // The API server validates ipBlock CIDRs with ParseCIDRSloppy: host bits are allowed and the
  // block is the network ("10.0.0.5/24" is 10.0.0.0/24). Read it the same way, keep what was
  // written for lint, and say so.
  auto parsed = Prefix::parse(text, /*allowHostBits=*/true);
  if (!parsed.ok()) return parsed;
  auto written = IpAddr::parse(std::string_view(text).substr(0, text.find('/')));
  if (written.ok() && *written != parsed->addr()) {
    note(p_.path().render() + ": \"" + text + "\" has host bits set; read as its network " +
         parsed->toString() + ", as the API server does");
    out.hostBitsSet.emplace_back(std::move(field), text);
  }
  return parsed;
}

template <class N>
void ObjectDecoder<N>::ipBlock(const N& n, IPBlock& out) {
  if (!expect(n, NodeType::Map)) return;
  checkFields(n, {"cidr", "except"});
  bool cidrOk = false;
  std::string cidrText;
  {
    PathScope s(p_, "cidr");
    auto cidr = n.get("cidr");
    if (!cidr) {
      p_.add("required");
    } else if (const std::string* c = string(*cidr)) {
      cidrText = *c;
      auto parsed = parseBlockPrefix(*c, "cidr", out);
      if (parsed.ok()) {
        out.cidr = *parsed;
        cidrOk = true;
      } else {
        p_.add(parsed.error().message);
      }
    }
  }
  auto except = n.get("except");
  if (!except) return;
  PathScope s(p_, "except");
  if (!expect(*except, NodeType::Seq)) return;
  except->forEachItem([&](size_t i, const N& e) {
    PathScope si(p_, i);
    const std::string* text = string(e);
    if (!text) return;
    auto parsed = parseBlockPrefix(*text, "except[" + std::to_string(i) + "]", out);
    if (!parsed.ok()) {
      p_.add(parsed.error().message);
      return;
    }
    if (!cidrOk) return;
    const std::string where = "\"" + *text + "\" is not inside cidr \"" + cidrText + "\"";
    if (parsed->family() != out.cidr.family()) {
      p_.add(where + " (different address family)");
    } else if (!out.cidr.contains(*parsed)) {
      p_.add(where);
    } else if (parsed->len() == out.cidr.len()) {
      // The API requires a strict subset: an except equal to the cidr leaves nothing.
      p_.add("\"" + *text + "\" must be strictly inside cidr \"" + cidrText +
             "\", not equal to it");
    } else {
      out.except.push_back(*parsed);
    }
  });
}

template <class N>
std::optional<Protocol> ObjectDecoder<N>::protocol(const N& n) {
  const std::string* s = string(n);
  if (!s) return std::nullopt;
  auto p = parseProtocol(*s);
  if (!p) p_.add("unsupported protocol \"" + *s + "\": must be TCP, UDP or SCTP");
  return p;
}

template <class N>
std::optional<uint16_t> ObjectDecoder<N>::portNumber(const N& n) {
  if (!expect(n, NodeType::Int)) return std::nullopt;
  int64_t v = n.integer();
  if (v < 1 || v > 65535) {
    p_.add(std::to_string(v) + " is not a valid port number (must be 1-65535)");
    return std::nullopt;
  }
  return static_cast<uint16_t>(v);
}

template <class N>
void ObjectDecoder<N>::policyPort(const N& n, PortSpec& out) {
  if (!expect(n, NodeType::Map)) return;
  checkFields(n, {"protocol", "port", "endPort"});
  if (auto proto = n.get("protocol")) {
    PathScope s(p_, "protocol");
    if (auto p = protocol(*proto)) out.protocol = *p;
  }  // absent: TCP, the API default (PortSpec's initializer)
  bool portBad = false;
  if (auto port = n.get("port")) {
    PathScope s(p_, "port");
    if (port->type() == NodeType::Int) {
      if (auto v = portNumber(*port)) {
        out.port = *v;
      } else {
        portBad = true;
      }
    } else if (port->type() == NodeType::String) {
      const std::string& name = port->str();
      if (auto e = validatePortName(name); !e.empty()) {
        bool digits = !name.empty() && std::all_of(name.begin(), name.end(),
                                                   [](char c) { return c >= '0' && c <= '9'; });
        // IntOrString: "80" is a string, hence a port *name*, and names need a letter.
        p_.add("\"" + name + "\" is not a valid port name: " + e +
               (digits ? "; for a numeric port write the number without quotes" : ""));
        portBad = true;
      } else {
        out.port = name;
      }
    } else {
      p_.add(std::string("expected a port number or name, got ") + nodeTypeName(port->type()));
      portBad = true;
    }
  }
  if (auto end = n.get("endPort")) {
    PathScope s(p_, "endPort");
    auto v = portNumber(*end);
    if (!v || portBad) return;
    if (!out.hasPort()) {
      p_.add("endPort requires port to be set");
    } else if (out.isNamed()) {
      p_.add("endPort cannot be used with a named port (\"" + std::get<std::string>(out.port) +
             "\"); it needs a numeric port");
    } else if (*v < std::get<uint16_t>(out.port)) {
      p_.add("endPort " + std::to_string(*v) + " must be greater than or equal to port " +
             std::to_string(std::get<uint16_t>(out.port)));
    } else {
      out.endPort = *v;
    }
  }
}

template <class N>
void ObjectDecoder<N>::rules(const N& n, const char* peersKey, std::vector<Rule>& out) {
  if (!expect(n, NodeType::Seq)) return;
  out.reserve(n.size());
  n.forEachItem([&](size_t i, const N& item) {
    PathScope si(p_, i);
    Rule& rule = out.emplace_back();
    // The API server decodes a null list element (`ingress: [null]`, or a YAML "-" with
    // nothing after it) into the zero rule, which allows everything. Accept it as the cluster
    // would, but say so: it is rarely what was meant.
    if (item.type() == NodeType::Null) {
      note(p_.path().render() + ": empty list element treated as {} (allows all peers and ports)");
      return;
    }
    if (!expect(item, NodeType::Map)) return;
    checkFields(item, {peersKey, "ports"});
    if (auto peers = item.get(peersKey)) {
      PathScope s(p_, peersKey);
      if (expect(*peers, NodeType::Seq)) {
        rule.peers.reserve(peers->size());
        peers->forEachItem([&](size_t j, const N& pn) {
          PathScope sj(p_, j);
          peer(pn, rule.peers.emplace_back());
        });
      }
    }
    if (auto ports = item.get("ports")) {
      PathScope s(p_, "ports");
      if (expect(*ports, NodeType::Seq)) {
        rule.ports.reserve(ports->size());
        ports->forEachItem([&](size_t j, const N& pn) {
          PathScope sj(p_, j);
          policyPort(pn, rule.ports.emplace_back());
        });
      }
    }
  });
}

template <class N>
void ObjectDecoder<N>::metadata(const N& obj, bool namespaced, bool nameIsDnsLabel, std::string& ns,
                                std::string& name, Labels& lbls) {
  PathScope s(p_, "metadata");
  auto md = obj.get("metadata");
  if (!md) {
    p_.add("required");
    return;
  }
  if (!expect(*md, NodeType::Map)) return;
  {
    PathScope sn(p_, "name");
    auto n = md->get("name");
    if (!n) {
      p_.add("required");
    } else if (const std::string* v = string(*n)) {
      name = *v;
      auto e = nameIsDnsLabel ? validateDnsLabel(*v) : validateDnsSubdomain(*v);
      if (!e.empty()) p_.add("invalid name \"" + *v + "\": " + e);
    }
  }
  if (namespaced) {
    PathScope sn(p_, "namespace");
    if (auto n = md->get("namespace")) {
      if (const std::string* v = string(*n)) {
        ns = *v;
        if (auto e = validateDnsLabel(*v); !e.empty())
          p_.add("invalid namespace \"" + *v + "\": " + e);
      }
    } else {
      ns = "default";  // what kubectl apply / the API server do without -n
    }
  }
  if (auto l = md->get("labels")) {
    PathScope sl(p_, "labels");
    labels(*l, lbls);
  }
}

template <class N>
void ObjectDecoder<N>::namespaceBody(const N&, Namespace& out) {
  // The API server sets this label on every namespace (1.21+); policies select namespaces by it.
  out.labels.insert_or_assign("kubernetes.io/metadata.name", out.name);
}

template <class N>
void ObjectDecoder<N>::containerPorts(const N& container, std::vector<ContainerPort>& out) {
  auto ports = container.get("ports");
  if (!ports) return;
  PathScope s(p_, "ports");
  if (!expect(*ports, NodeType::Seq)) return;
  ports->forEachItem([&](size_t i, const N& pn) {
    PathScope si(p_, i);
    if (!expect(pn, NodeType::Map)) return;
    ContainerPort cp;
    {
      PathScope sp(p_, "containerPort");
      auto v = pn.get("containerPort");
      if (!v) {
        p_.add("required");
        return;
      }
      auto num = portNumber(*v);
      if (!num) return;
      cp.port = *num;
    }
    if (auto nm = pn.get("name")) {
      PathScope sp(p_, "name");
      const std::string* str = string(*nm);
      if (!str) return;
      if (auto e = validatePortName(*str); !e.empty()) {
        p_.add("\"" + *str + "\" is not a valid port name: " + e);
        return;
      }
      cp.name = *str;
    }
    if (auto pr = pn.get("protocol")) {
      PathScope sp(p_, "protocol");
      auto p = protocol(*pr);
      if (!p) return;
      cp.protocol = *p;
    }
    out.push_back(std::move(cp));
  });
}

template <class N>
void ObjectDecoder<N>::podBody(const N& obj, Pod& out) {
  if (auto spec = obj.get("spec")) {
    PathScope s(p_, "spec");
    if (expect(*spec, NodeType::Map)) {
      if (auto hn = spec->get("hostNetwork")) {
        PathScope sh(p_, "hostNetwork");
        if (expect(*hn, NodeType::Bool)) out.hostNetwork = hn->boolean();
      }
      if (auto nn = spec->get("nodeName")) {
        PathScope sn(p_, "nodeName");
        if (const std::string* v = string(*nn)) out.nodeName = *v;
      }
      if (auto cs = spec->get("containers")) {
        PathScope sc(p_, "containers");
        if (expect(*cs, NodeType::Seq)) {
          cs->forEachItem([&](size_t i, const N& c) {
            PathScope si(p_, i);
            if (expect(c, NodeType::Map)) containerPorts(c, out.ports);
          });
        }
      }
      if (auto cs = spec->get("initContainers")) {
        PathScope sc(p_, "initContainers");
        if (expect(*cs, NodeType::Seq)) {
          cs->forEachItem([&](size_t i, const N& c) {
            PathScope si(p_, i);
            if (!expect(c, NodeType::Map)) return;
            // Sidecars (restartPolicy: Always) keep running and serve their ports.
            auto rp = c.get("restartPolicy");
            if (rp && rp->type() == NodeType::String && rp->str() == "Always")
              containerPorts(c, out.ports);
          });
        }
      }
    }
  }
  auto status = obj.get("status");
  if (!status) return;
  PathScope s(p_, "status");
  if (!expect(*status, NodeType::Map)) return;
  auto addIp = [&](const N& n) {
    const std::string* text = string(n);
    if (!text) return;
    auto ip = IpAddr::parse(*text);
    if (!ip.ok()) {
      p_.add(ip.error().message);
      return;
    }
    if (std::find(out.ips.begin(), out.ips.end(), *ip) == out.ips.end()) out.ips.push_back(*ip);
  };
  if (auto ips = status->get("podIPs")) {
    PathScope sp(p_, "podIPs");
    if (expect(*ips, NodeType::Seq)) {
      ips->forEachItem([&](size_t i, const N& entry) {
        PathScope si(p_, i);
        if (!expect(entry, NodeType::Map)) return;
        PathScope sip(p_, "ip");
        if (auto ip = entry.get("ip")) {
          addIp(*ip);
        } else {
          p_.add("required");
        }
      });
    }
  }
  if (out.ips.empty()) {
    if (auto ip = status->get("podIP")) {
      PathScope sp(p_, "podIP");
      addIp(*ip);
    }
  }
}

template <class N>
void ObjectDecoder<N>::enforcement(const N& obj, NetworkPolicy& out) {
  auto md = obj.get("metadata");
  if (!md || md->type() != NodeType::Map) return;  // metadata() reports it
  auto annotations = md->get("annotations");
  if (!annotations) return;
  PathScope sa(p_, "metadata");
  PathScope sb(p_, "annotations");
  if (!expect(*annotations, NodeType::Map)) return;
  auto v = annotations->get(kEnforcementAnnotation);
  if (!v) return;
  PathScope sv(p_, kEnforcementAnnotation);
  // Annotation values are strings to the API server; a YAML `audit` is one already.
  const std::string* text = string(*v);
  if (!text) return;
  out.enforcementText = *text;
  // Any other value is accepted, as the API server does, and enforced: failing closed. Lint
  // warns about it.
  out.enforcement = *text == "audit" ? Enforcement::Audit : Enforcement::Enforce;
}

template <class N>
void ObjectDecoder<N>::policyBody(const N& obj, NetworkPolicy& out) {
  checkFields(obj, {"apiVersion", "kind", "metadata", "spec", "status"});
  enforcement(obj, out);
  auto spec = obj.get("spec");
  if (!spec) {
    // The API accepts this: podSelector {} and policyTypes [Ingress] isolate every pod.
    note("spec absent: selects every pod in the namespace and denies all ingress");
    out.affectsIngress = true;
    return;
  }
  PathScope s(p_, "spec");
  if (!expect(*spec, NodeType::Map)) return;
  checkFields(*spec, {"podSelector", "policyTypes", "ingress", "egress"});
  if (auto ps = spec->get("podSelector")) {
    PathScope sp(p_, "podSelector");
    selector(*ps, out.podSelector);
  } else {
    note("spec.podSelector absent: the policy selects every pod in the namespace");
  }
  if (auto in = spec->get("ingress")) {
    PathScope si(p_, "ingress");
    rules(*in, "from", out.ingress);
  }
  if (auto eg = spec->get("egress")) {
    PathScope se(p_, "egress");
    rules(*eg, "to", out.egress);
  }
  bool typesGiven = false;
  if (auto types = spec->get("policyTypes")) {
    PathScope st(p_, "policyTypes");
    if (expect(*types, NodeType::Seq)) {
      if (types->size() > 2) p_.add("may not list more than two policyTypes");
      types->forEachItem([&](size_t i, const N& t) {
        PathScope si(p_, i);
        const std::string* v = string(t);
        if (!v) return;
        if (*v == "Ingress") {
          out.affectsIngress = true;
        } else if (*v == "Egress") {
          out.affectsEgress = true;
        } else {
          p_.add("unsupported policy type \"" + *v + "\": must be Ingress or Egress");
        }
        typesGiven = true;
      });
    }
  }
  if (!typesGiven) {
    // API default (also for `policyTypes: []`): Ingress, plus Egress when there are egress rules.
    out.affectsIngress = true;
    out.affectsEgress = !out.egress.empty();
  } else {
    if (!out.affectsIngress && !out.ingress.empty())
      note("spec.ingress is ignored: policyTypes does not include Ingress");
    if (!out.affectsEgress && !out.egress.empty())
      note("spec.egress is ignored: policyTypes does not include Egress");
  }
}

}  // namespace sluice::model::detail
