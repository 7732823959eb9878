// File level of the decoder: reading paths, telling JSON from YAML, multi-document files and
// List kinds, dispatch by kind, and assembling the cluster with duplicate detection. The
// per-object validation is object_decoder.h, shared by both formats.
#include "policyd/model/decode.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>

#include "common/file_util.h"
#include "policyd/model/json_filter.h"
#include "policyd/model/object_decoder.h"
#include "policyd/model/tree_node.h"

namespace sluice::model {

namespace detail {

std::string FieldPath::render() const {
  std::string out;
  for (const auto& s : segs_) {
    if (s.key) {
      if (!out.empty()) out += '.';
      out += s.key;
    } else {
      out += '[' + std::to_string(s.index) + ']';
    }
  }
  return out;
}

void Problems::add(const std::string& what) {
  ++count_;
  if (list_.size() >= kMaxProblems) return;
  std::string where = path_.render();
  list_.push_back(where.empty() ? what : where + ": " + what);
}

}  // namespace detail

namespace {

using detail::JsonNode;
using detail::NodeType;
using detail::YamlNode;

// Lists nest only through `kind: List` of Lists, which no tool emits deeper than this.
constexpr int kMaxListDepth = 4;

enum class Kind { Namespace, Pod, NetworkPolicy };

// Adds objects to a Decoded, rejecting a second object with the same kind and name: the first
// one wins, the way a later `kubectl create` of the same object would fail.
class Collector {
 public:
  explicit Collector(Decoded& out) : out_(out) {
    for (const auto& n : out_.cluster.namespaces) namespaces_.emplace(n.name, n.origin.file);
    for (const auto& p : out_.cluster.pods) pods_.emplace(p.key(), p.origin.file);
    for (const auto& p : out_.cluster.policies) policies_.emplace(p.key(), p.origin.file);
  }

  void add(Namespace&& n) {
    if (claim(namespaces_, n.name, n.origin.file, "Namespace " + n.name))
      out_.cluster.namespaces.push_back(std::move(n));
  }
  void add(Pod&& p) {
    if (claim(pods_, p.key(), p.origin.file, "Pod " + p.key()))
      out_.cluster.pods.push_back(std::move(p));
  }
  void add(NetworkPolicy&& p) {
    if (claim(policies_, p.key(), p.origin.file, "NetworkPolicy " + p.key()))
      out_.cluster.policies.push_back(std::move(p));
  }

 private:
  using Index = std::unordered_map<std::string, std::string>;  // key -> file of the first

  bool claim(Index& index, const std::string& key, const std::string& file,
             const std::string& label) {
    auto [it, inserted] = index.try_emplace(key, file);
    if (inserted) return true;
    out_.errors.push_back(makeError(file + ": " + label + ": duplicate: already defined in " +
                                    it->second + "; keeping the first definition"));
    return false;
  }

  Decoded& out_;
  Index namespaces_;
  Index pods_;
  Index policies_;
};

// Decodes the documents of one file into a Collector.
class FileDecoder {
 public:
  FileDecoder(const std::string& file, Decoded& out, Collector& collector)
      : file_(file), out_(out), collector_(collector) {}

  void run(std::string_view text);

 private:
  // While staging, results are held back (in order) instead of going to the output: items
  // streamed out of a JSON file count only once the whole file has parsed, and only if the
  // top-level object really is a List.
  using Staged = std::variant<Namespace, Pod, NetworkPolicy, Error, std::string>;

  void runJson(std::string_view text);
  void runYaml(std::string_view text);
  void fileError(const std::string& what) { emitError(makeError(file_ + ": " + what)); }
  void emitError(Error&& e) {
    if (staging_) {
      staged_.emplace_back(std::move(e));
    } else {
      out_.errors.push_back(std::move(e));
    }
  }
  void emitNote(std::string&& n) {
    if (staging_) {
      staged_.emplace_back(std::move(n));
    } else {
      out_.notes.push_back(std::move(n));
    }
  }
  template <class T>
  void emitObject(T&& value) {
    if (staging_) {
      staged_.emplace_back(std::forward<T>(value));
    } else {
      collector_.add(std::forward<T>(value));
    }
  }
  void commitStaged();

  // `dups`: field paths, relative to `doc`, of keys the text gives more than once.
  template <class N>
  void document(const N& doc, int depth, const std::string& inheritKind,
                const std::string& inheritApiVersion, const std::vector<std::string>& dups);
  template <class N>
  void object(const N& obj, Kind kind, int ordinal, const std::vector<std::string>& dups);

  const std::string& file_;
  Decoded& out_;
  Collector& collector_;
  int ordinal_ = 0;  // objects seen in this file, Lists flattened
  bool staging_ = false;
  std::vector<Staged> staged_;
  detail::Problems problems_;
  std::vector<std::string> notes_;
};

void FileDecoder::commitStaged() {
  for (auto& s : staged_) {
    std::visit(
        [&](auto&& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, Error>) {
            out_.errors.push_back(std::move(v));
          } else if constexpr (std::is_same_v<T, std::string>) {
            out_.notes.push_back(std::move(v));
          } else {
            collector_.add(std::move(v));
          }
        },
        s);
  }
  staged_.clear();
}

template <class N>
std::string scalarOrEmpty(const std::optional<N>& n) {
  return n && n->type() == NodeType::String ? n->str() : std::string();
}

template <class N>
std::string bestEffortName(const N& obj) {
  auto md = obj.get("metadata");
  if (!md || md->type() != NodeType::Map) return "";
  std::string name = scalarOrEmpty(md->get("name"));
  std::string ns = scalarOrEmpty(md->get("namespace"));
  return ns.empty() ? name : ns + "/" + name;
}

// The paths of `dups` under `prefix` ("items[3]"), relative to it.
std::vector<std::string> duplicatesUnder(const std::vector<std::string>& dups,
                                         const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& d : dups) {
    if (d.size() > prefix.size() + 1 && d.starts_with(prefix) && d[prefix.size()] == '.')
      out.push_back(d.substr(prefix.size() + 1));
  }
  return out;
}

template <class N>
void FileDecoder::document(const N& doc, int depth, const std::string& inheritKind,
                           const std::string& inheritApiVersion,
                           const std::vector<std::string>& dups) {
  if (doc.type() == NodeType::Null) return;  // empty document, e.g. a trailing "---"
  int ordinal = ordinal_++;
  std::string where = "object " + std::to_string(ordinal + 1);
  if (doc.type() != NodeType::Map) {
    fileError(where + ": expected a Kubernetes object (a map), got " +
              detail::nodeTypeName(doc.type()));
    return;
  }
  // Items of a typed list (PodList from the API) carry no kind or apiVersion of their own.
  std::string kind = inheritKind;
  std::string apiVersion = inheritApiVersion;
  if (auto k = doc.get("kind")) {
    if (k->type() != NodeType::String) {
      fileError(where + ": kind: " + detail::typeMismatch(*k, NodeType::String));
      return;
    }
    kind = k->str();
  }
  if (auto a = doc.get("apiVersion")) {
    if (a->type() != NodeType::String) {
      fileError(where + ": apiVersion: " + detail::typeMismatch(*a, NodeType::String));
      return;
    }
    apiVersion = a->str();
  }
  if (kind.empty()) {
    fileError(where + ": kind: required");
    return;
  }

  bool isList = kind == "List" || (kind.size() > 4 && kind.ends_with("List") && doc.get("items"));
  if (isList) {
    --ordinal_;  // a List is a container, not an object
    auto items = doc.get("items");
    if (!items) return;  // an empty List
    if (items->type() != NodeType::Seq) {
      fileError(kind + ": items: " + detail::typeMismatch(*items, NodeType::Seq));
      return;
    }
    if (depth >= kMaxListDepth) {
      fileError(kind + ": Lists nested too deeply");
      return;
    }
    std::string itemKind = kind == "List" ? "" : kind.substr(0, kind.size() - 4);
    std::string itemApiVersion = kind == "List" ? "" : apiVersion;
    for (const auto& d : dups) {
      if (!d.starts_with("items[")) {
        emitNote(file_ + ": " + kind + ": " + d +
                 ": duplicate key; the last value is used, as the API server does");
      }
    }
    items->forEachItem([&](size_t i, const N& item) {
      document(item, depth + 1, itemKind, itemApiVersion,
               duplicatesUnder(dups, "items[" + std::to_string(i) + "]"));
    });
    return;
  }

  bool known = kind == "Namespace" || kind == "Pod" || kind == "NetworkPolicy";
  const char* wantApi = kind == "NetworkPolicy" ? "networking.k8s.io/v1" : "v1";
  if (known && apiVersion.empty()) {
    std::string name = bestEffortName(doc);
    fileError(kind + " " + (name.empty() ? "(" + where + ")" : name) + ": apiVersion: required (" +
              wantApi + ")");
    return;
  }
  if (!known || apiVersion != wantApi) {
    std::string name = bestEffortName(doc);
    emitNote(file_ + ": skipped " + kind + (name.empty() ? "" : " " + name) + " (" + apiVersion +
             "): only v1 Namespace, v1 Pod and networking.k8s.io/v1 NetworkPolicy are used");
    return;
  }
  object(doc,
         kind == "Namespace" ? Kind::Namespace
         : kind == "Pod"     ? Kind::Pod
                             : Kind::NetworkPolicy,
         ordinal, dups);
}

template <class N>
void FileDecoder::object(const N& obj, Kind kind, int ordinal,
                         const std::vector<std::string>& dupsIn) {
  problems_ = detail::Problems();
  notes_.clear();
  // Sorted and once each, whichever reader found them (a key given three times is one).
  std::vector<std::string> dups = dupsIn;
  std::sort(dups.begin(), dups.end());
  dups.erase(std::unique(dups.begin(), dups.end()), dups.end());
  // YAML and JSON give one answer for a duplicated key: its last value (JSON through the API
  // server keeps the last; a YAML library may keep either, so the adapters pick the last).
  for (const auto& d : dups) {
    notes_.push_back(d + ": duplicate key; the last value is used, as the API server does");
  }
  detail::ObjectDecoder<N> d(problems_, notes_);
  Origin origin{file_, ordinal};

  auto label = [&](const char* kindName, const std::string& ns, const std::string& name) {
    std::string out = std::string(kindName) + " ";
    if (name.empty()) return out + "(object " + std::to_string(ordinal + 1) + ")";
    return ns.empty() ? out + name : out + ns + "/" + name;
  };
  auto finish = [&](auto&& value, const std::string& what) {
    for (const auto& n : notes_) emitNote(file_ + ": " + what + ": " + n);
    if (!problems_.any()) {
      value.origin = std::move(origin);
      emitObject(std::move(value));
      return;
    }
    std::string msg = file_ + ": " + what + ": ";
    const auto& list = problems_.list();
    for (size_t i = 0; i < list.size(); ++i) msg += (i ? "; " : "") + list[i];
    if (problems_.count() > list.size())
      msg += "; and " + std::to_string(problems_.count() - list.size()) + " more";
    emitError(makeError(std::move(msg)));
  };

  switch (kind) {
    case Kind::Namespace: {
      Namespace ns;
      std::string unused;
      d.metadata(obj, /*namespaced=*/false, /*nameIsDnsLabel=*/true, unused, ns.name, ns.labels);
      d.namespaceBody(obj, ns);
      std::string what = label("Namespace", "", ns.name);
      finish(std::move(ns), what);
      break;
    }
    case Kind::Pod: {
      Pod pod;
      d.metadata(obj, true, false, pod.namespace_, pod.name, pod.labels);
      d.podBody(obj, pod);
      std::string what = label("Pod", pod.namespace_, pod.name);
      finish(std::move(pod), what);
      break;
    }
    case Kind::NetworkPolicy: {
      NetworkPolicy pol;
      d.metadata(obj, true, false, pol.namespace_, pol.name, pol.podSelector.matchLabels);
      // Policy labels are not used; metadata() filled podSelector only to validate them.
      pol.podSelector.matchLabels.clear();
      d.policyBody(obj, pol);
      pol.duplicateKeys = dups;
      std::string what = label("NetworkPolicy", pol.namespace_, pol.name);
      finish(std::move(pol), what);
      break;
    }
  }
}

void FileDecoder::runJson(std::string_view text) {
  // Self-describing items (with their own kind and apiVersion) are decoded as soon as the
  // parser completes them; items of a typed list (PodList) need the list's kind, which may come
  // after `items` in the text, so they stay in the tree for the walk below.
  staging_ = true;
  auto onItem = [&](const nlohmann::json& item, bool inRootArray,
                    const std::vector<std::string>& dups) {
    if (!inRootArray) {
      auto k = item.find("kind");
      auto a = item.find("apiVersion");
      if (k == item.end() || !k->is_string() || a == item.end() || !a->is_string()) return false;
    }
    document(JsonNode(item), inRootArray ? 0 : 1, "", "", dups);
    return true;
  };
  std::vector<std::string> dups;
  auto parsed = detail::parseJsonFiltered(text, onItem, &dups);
  staging_ = false;
  if (!parsed.ok()) {
    staged_.clear();  // a syntax error makes the whole file suspect
    fileError("invalid JSON: " + parsed.error().message);
    return;
  }
  const nlohmann::json& root = *parsed;
  if (root.is_array()) {
    commitStaged();
    size_t i = 0;
    for (const auto& item : root) {
      document(JsonNode(item), 0, "", "", duplicatesUnder(dups, "[" + std::to_string(i++) + "]"));
    }
    return;
  }
  if (!staged_.empty()) {
    auto k = root.is_object() ? root.find("kind") : root.end();
    std::string kind = k != root.end() && k->is_string() ? k->get<std::string>() : "";
    bool isList = kind == "List" || (kind.size() > 4 && kind.ends_with("List"));
    if (isList) {
      commitStaged();
    } else {
      staged_.clear();  // not a List after all: its items are not objects of their own
    }
  }
  document(JsonNode(root), 0, "", "", dups);
}

// yaml-cpp 0.7/0.8's LoadAll never returns (allocating without bound) on a stray token it
// cannot place, e.g. "{}," (jbeder/yaml-cpp#1040; fixed upstream by #1319): the parser reports
// the same empty document at the same position forever. This pass walks the events first and
// stops at a document that makes no progress, so LoadAll only ever sees a stream that ends.
class ProgressGuard final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    events_ = 0;
    onlyNullAt_ = -1;
    start_ = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override {
    if (events_++ == 0) onlyNullAt_ = mark.pos;
  }
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { ++events_; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {
    ++events_;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    ++events_;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    ++events_;
  }
  void OnMapEnd() override {}

  // An empty document at the position of the previous empty one: the parser is stuck.
  bool stuck() {
    bool emptyDoc = events_ == 1 && onlyNullAt_ >= 0;
    bool same = emptyDoc && onlyNullAt_ == lastNullAt_;
    lastNullAt_ = emptyDoc ? onlyNullAt_ : -2;
    return same;
  }
  const YAML::Mark& start() const { return start_; }

 private:
  int events_ = 0;
  int onlyNullAt_ = -1;
  int lastNullAt_ = -2;
  YAML::Mark start_;
};

// Empty when the stream ends; else where the parser stopped making progress.
std::optional<YAML::Mark> yamlStreamStalls(std::string_view text) {
  std::stringstream in{std::string(text)};
  YAML::Parser parser(in);
  ProgressGuard guard;
  while (parser.HandleNextDocument(guard)) {
    if (guard.stuck()) return guard.start();
  }
  return std::nullopt;
}

void FileDecoder::runYaml(std::string_view text) {
  std::vector<YAML::Node> docs;
  try {
    if (auto at = yamlStreamStalls(text)) {
      fileError("line " + std::to_string(at->line + 1) + ", column " +
                std::to_string(at->column + 1) +
                ": invalid YAML: a token the parser cannot place (it makes no progress)");
      return;
    }
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    // A syntax error makes the whole file suspect, so none of its documents is used.
    std::string where = e.mark.is_null() ? ""
                                         : "line " + std::to_string(e.mark.line + 1) + ", column " +
                                               std::to_string(e.mark.column + 1) + ": ";
    fileError(where + "invalid YAML: " + e.msg);
    return;
  }
  for (const auto& doc : docs) document(YamlNode(doc), 0, "", "", detail::yamlDuplicateKeys(doc));
}

// A line that is a YAML document marker: "---" then the end of the line, a space or a tab.
bool hasDocumentSeparator(std::string_view text) {
  for (size_t pos = text.find("\n---"); pos != std::string_view::npos;
       pos = text.find("\n---", pos + 1)) {
    size_t after = pos + 4;
    if (after == text.size() || text[after] == '\n' || text[after] == '\r' || text[after] == ' ' ||
        text[after] == '\t')
      return true;
  }
  return false;
}

void FileDecoder::run(std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // UTF-8 BOM
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return;  // empty file
  // JSON is valid YAML too, but nlohmann is an order of magnitude faster on large dumps. A
  // stream whose first document is flow-style JSON followed by `---` and more documents is
  // YAML (kubectl accepts it); JSON text never has a line starting with "---".
  try {
    if ((text[first] == '{' || text[first] == '[') && !hasDocumentSeparator(text)) {
      runJson(text);
    } else {
      runYaml(text);
    }
  } catch (const std::exception& e) {
    // The walk never throws by design; this keeps a bug from escaping the decode boundary.
    staging_ = false;
    staged_.clear();
    fileError(std::string("internal error while decoding: ") + e.what());
  }
}

// Files under a directory, recursively, sorted. Entries whose name starts with '.' are
// skipped: a mounted ConfigMap holds every file twice (the `..data` symlinks and the hidden
// timestamped directory they point into), and editors leave hidden swap files behind.
void collectDirectory(const std::filesystem::path& dir, std::vector<std::string>& files,
                      Decoded& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  std::vector<std::string> found;
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.filename().string().starts_with(".")) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    std::error_code fec;
    if (it->is_regular_file(fec) && isManifestFile(p)) found.push_back(p.string());
  }
  if (ec) out.errors.push_back(makeError(dir.string() + ": cannot list: " + ec.message()));
  std::sort(found.begin(), found.end());
  files.insert(files.end(), found.begin(), found.end());
}

}  // namespace

void Decoded::merge(Decoded&& other) {
  errors.insert(errors.end(), std::make_move_iterator(other.errors.begin()),
                std::make_move_iterator(other.errors.end()));
  notes.insert(notes.end(), std::make_move_iterator(other.notes.begin()),
               std::make_move_iterator(other.notes.end()));
  Collector collector(*this);
  for (auto& n : other.cluster.namespaces) collector.add(std::move(n));
  for (auto& p : other.cluster.pods) collector.add(std::move(p));
  for (auto& p : other.cluster.policies) collector.add(std::move(p));
  other = Decoded();
}

Decoded decodeText(std::string_view text, const std::string& file) {
  Decoded out;
  Collector collector(out);
  FileDecoder(file, out, collector).run(text);
  return out;
}

Decoded loadPaths(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  Decoded out;
  std::vector<std::string> files;
  for (const auto& path : paths) {
    std::error_code ec;
    auto st = fs::status(path, ec);
    if (ec || !fs::exists(st)) {
      out.errors.push_back(makeError(
          path +
          ": cannot read: " + (ec ? ec.message() : std::string("no such file or directory"))));
    } else if (fs::is_directory(st)) {
      collectDirectory(path, files, out);
    } else {
      files.push_back(path);  // named explicitly: read whatever its extension
    }
  }
  // The same file reached twice (a directory and a file inside it) is read once, not reported
  // as duplicate objects.
  std::set<std::string> seen;
  Collector collector(out);
  for (const auto& file : files) {
    std::error_code ec;
    auto canon = fs::weakly_canonical(file, ec);
    if (!seen.insert(ec ? file : canon.string()).second) continue;
    auto text = readFile(file);
    if (!text.ok()) {
      out.errors.push_back(text.error());
      continue;
    }
    FileDecoder(file, out, collector).run(*text);
  }
  return out;
}

bool isManifestFile(const std::filesystem::path& p) {
  auto ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

}  // namespace sluice::model
